/**
 * The most pipelined requests of one client connection that run at once, on both faces
 * (http/connection-order.ts). RFC 9112 §9.3.2 lets a server process safe pipelined requests
 * in parallel, but their answers still go out in order, so every running request behind the
 * first holds its answer (up to an upstream read, 64 KiB,
 * before backpressure stops it) until its turn. Unbounded, a client that pipelined 5,000 GETs
 * in one write and never read made the gateway send all 5,000 upstream and hold ~450 MB
 * (adversarial review, session 26). The rest wait, not yet sent upstream, and start as
 * running ones finish. nginx and HAProxy run a connection's pipelined requests one at a time.
 */
export const MAX_PIPELINED_RUNNING = 8;

/**
 * The most pipelined requests of one connection read and waiting for their turn before the
 * gateway stops reading the connection; it reads again once half of them have started. A
 * waiting request is a parsed head with its request and response objects, ~3 KB: unbounded,
 * a client that pipelined 940 KB of small GETs and never read its answers had all 20,000 of
 * them parsed, ~60 MB of heap for one connection (found in session 30). The node:http front
 * stops reading only between two reads of the socket (its parser takes a whole read at once),
 * so one read more (at most 64 KiB of requests) may be waiting; the net front stops at the bound.
 */
export const MAX_PIPELINED_WAITING = 32;
