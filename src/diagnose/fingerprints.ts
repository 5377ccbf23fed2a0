import type { ProxyErrorType } from '../failure/index.js';

/**
 * The hops `gatewise diagnose` can name, as data: one entry per product, each with where its
 * fingerprint is documented or was seen (`source`) and the evidence it keys on. Nothing in
 * the code branches on a vendor; `hop.ts` evaluates these conditions against a response.
 */

/** One thing to look for in a response; every condition of an evidence must hold. */
export type Condition =
  /** A response header is present (and its value matches). */
  | { header: string; match?: RegExp }
  /** A response header is absent. */
  | { noHeader: string }
  /** The body (its first 64 KiB, as text) matches. */
  | { body: RegExp }
  /** The status code matches (as three digits). */
  | { status: RegExp }
  /** A `Proxy-Status` member's name matches. */
  | { proxyStatus: RegExp };

export interface Evidence {
  when: readonly Condition[];
  /**
   * `made`: this hop wrote the answer itself (its error page, a header only its own answers
   * carry). `on-path`: the hop is between you and the origin (headers it adds to every
   * answer it passes on).
   */
  shows: 'made' | 'on-path';
  /** 3: words or fields only this product writes; 2: specific but copyable; 1: weak (a shape many share). */
  weight: 1 | 2 | 3;
  /** What this evidence is, in words, for the report. */
  says: string;
}

export interface ErrorTypeRule {
  when: readonly Condition[];
  /** The RFC 9209 type that fits the hop's own words. */
  type: ProxyErrorType;
  /** The hop's words, explained. */
  means: string;
}

export type HopKind = 'CDN' | 'cloud load balancer' | 'reverse proxy' | 'cache' | 'application platform' | 'service mesh' | 'forward proxy' | 'gateway';

export interface Fingerprint {
  id: string;
  name: string;
  kind: HopKind;
  /** Where this fingerprint is documented or was seen. */
  source: string;
  evidence: readonly Evidence[];
  /** Headers whose values identify the request to the hop's operator (quote them when you contact them). */
  ids?: readonly string[];
  /** An entry this one is a more specific form of: when both match, this one names the hop. */
  refines?: string;
  /** The hop's own words mapped to RFC 9209 types (its answer does not carry Proxy-Status). */
  types?: readonly ErrorTypeRule[];
  /** Who runs it, for "whom to contact". */
  operator: 'site' | 'vendor-and-site' | 'local';
}

const NGINX_PAGE = /<hr><center>nginx(\/[\d.]+)?<\/center>/;

export const FINGERPRINTS: readonly Fingerprint[] = [
  {
    id: 'cloudflare',
    name: 'Cloudflare',
    kind: 'CDN',
    operator: 'vendor-and-site',
    // developers.cloudflare.com/support/troubleshooting/http-status-codes/cloudflare-5xx-errors/ (520-527, and
    // 502/504 "Bad gateway" pages with the Browser / Cloudflare / Host diagram and "Cloudflare Ray ID");
    // every response through Cloudflare carries `Server: cloudflare` and `CF-RAY: <16 hex>-<colo>`.
    source: 'Cloudflare docs, "Cloudflare 5xx errors"; CF-RAY on every proxied response',
    ids: ['cf-ray'],
    evidence: [
      { when: [{ header: 'cf-ray', match: /^[0-9a-f]{16}(-[A-Z]{3})?$/ }], shows: 'on-path', weight: 3, says: 'CF-RAY header' },
      { when: [{ header: 'server', match: /^cloudflare$/i }], shows: 'on-path', weight: 2, says: 'Server: cloudflare' },
      { when: [{ body: /Cloudflare Ray ID/ }], shows: 'made', weight: 3, says: 'the page says "Cloudflare Ray ID"' },
      { when: [{ body: /cf-error-details|cf-wrapper/ }], shows: 'made', weight: 3, says: "Cloudflare's error page markup" },
    ],
    types: [
      { when: [{ status: /^521$/ }], type: 'connection_refused', means: '521 Web server is down: the origin refused the connection' },
      { when: [{ status: /^522$/ }], type: 'connection_timeout', means: '522 Connection timed out: the origin did not accept the connection in time' },
      { when: [{ status: /^523$/ }], type: 'destination_ip_unroutable', means: '523 Origin is unreachable' },
      { when: [{ status: /^524$/ }], type: 'http_response_timeout', means: '524 A timeout occurred: the origin accepted the connection but did not answer in time' },
      { when: [{ status: /^525$/ }], type: 'tls_protocol_error', means: '525 SSL handshake failed with the origin' },
      { when: [{ status: /^526$/ }], type: 'tls_certificate_error', means: "526 Invalid SSL certificate: the origin's certificate is not trusted" },
      { when: [{ status: /^520$/ }], type: 'http_protocol_error', means: '520 Web server returned an unknown error' },
      { when: [{ status: /^504$/ }], type: 'http_response_timeout', means: '504 Gateway time-out from the origin' },
    ],
  },
  {
    id: 'aws-alb',
    name: 'AWS Elastic Load Balancing (ALB/ELB)',
    kind: 'cloud load balancer',
    operator: 'site',
    // docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-troubleshooting.html
    // ("HTTP 502: Bad gateway", "HTTP 503", "HTTP 504"): the load balancer's own answers carry
    // `Server: awselb/2.0` and a bare "<center><h1>502 Bad Gateway</h1></center>" page; targets' answers keep their own Server.
    source: 'AWS docs, "Troubleshoot your Application Load Balancers" (HTTP 502/503/504)',
    ids: ['x-amzn-requestid', 'x-amzn-trace-id'],
    evidence: [
      { when: [{ header: 'server', match: /^awselb(\/[\d.]+)?$/i }], shows: 'made', weight: 3, says: 'Server: awselb (only the load balancer\'s own answers carry it)' },
      { when: [{ body: /<center><h1>50[234] [A-Za-z ]+<\/h1><\/center>\s*<\/body>/ }, { noHeader: 'via' }], shows: 'made', weight: 1, says: 'a bare "<center><h1>" error page' },
    ],
    types: [
      { when: [{ status: /^503$/ }], type: 'destination_unavailable', means: '503: no registered healthy target' },
      { when: [{ status: /^504$/ }], type: 'http_response_timeout', means: '504: the target did not answer within the idle timeout' },
    ],
  },
  {
    id: 'cloudfront',
    name: 'Amazon CloudFront',
    kind: 'CDN',
    operator: 'vendor-and-site',
    // docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/http-502-bad-gateway.html and
    // http-504-gateway-timeout.html: "ERROR: The request could not be satisfied", "Generated by cloudfront
    // (CloudFront)", `X-Cache: Error from cloudfront`, `Via: 1.1 <id>.cloudfront.net (CloudFront)`, X-Amz-Cf-Id / X-Amz-Cf-Pop.
    source: 'AWS docs, CloudFront "HTTP 502 status code (Bad Gateway)" / "HTTP 504 status code (Gateway Timeout)"',
    ids: ['x-amz-cf-id', 'x-amz-cf-pop'],
    evidence: [
      { when: [{ header: 'x-amz-cf-id' }], shows: 'on-path', weight: 3, says: 'X-Amz-Cf-Id header' },
      { when: [{ header: 'via', match: /cloudfront\.net \(CloudFront\)/ }], shows: 'on-path', weight: 3, says: 'Via: … cloudfront.net (CloudFront)' },
      { when: [{ body: /The request could not be satisfied/ }, { body: /CloudFront/ }], shows: 'made', weight: 3, says: 'the page says "The request could not be satisfied … CloudFront"' },
      { when: [{ header: 'x-cache', match: /^Error from cloudfront$/i }, { body: /Generated by cloudfront/i }], shows: 'made', weight: 3, says: 'X-Cache: Error from cloudfront and "Generated by cloudfront"' },
    ],
    types: [
      { when: [{ body: /wasn't able to connect to the origin|could not connect to the origin/i }], type: 'connection_refused', means: 'CloudFront could not connect to the origin' },
      { when: [{ body: /SSL|certificate/i }, { status: /^502$/ }], type: 'tls_certificate_error', means: "CloudFront could not set up TLS with the origin (its certificate)" },
      { when: [{ status: /^504$/ }], type: 'http_response_timeout', means: 'the origin did not answer CloudFront in time' },
    ],
  },
  {
    id: 'google',
    name: 'Google Front End / Cloud Load Balancing',
    kind: 'cloud load balancer',
    operator: 'vendor-and-site',
    // cloud.google.com/load-balancing/docs/https/troubleshooting-ext-https-lbs (502 failed_to_connect_to_backend,
    // failed_to_pick_backend); the GFE error page "Error 502 (Server Error)!!1 … That's an error." is the one
    // google.com serves; GCLB adds `Via: 1.1 google`, App Engine / Cloud Run answer with `Server: Google Frontend`.
    source: 'Google Cloud docs, "Troubleshoot external Application Load Balancers"; the GFE error page',
    ids: ['x-cloud-trace-context'],
    evidence: [
      { when: [{ header: 'via', match: /\b1\.1 google\b/ }], shows: 'on-path', weight: 3, says: 'Via: 1.1 google' },
      { when: [{ header: 'server', match: /^Google Frontend$/ }], shows: 'on-path', weight: 3, says: 'Server: Google Frontend' },
      { when: [{ body: /That(’|&#8217;|')s an error\./ }, { body: /Error 50\d \(Server Error\)!!1/ }], shows: 'made', weight: 3, says: 'the page says "Error 50x (Server Error)!!1 … That\'s an error."' },
      { when: [{ body: /<h1>Error: Server Error<\/h1>/ }, { body: /Please try again in 30 seconds\./ }], shows: 'made', weight: 3, says: 'the load balancer\'s page "Error: Server Error … Please try again in 30 seconds."' },
    ],
    types: [
      { when: [{ body: /failed_to_pick_backend/ }], type: 'destination_unavailable', means: 'no healthy backend to pick' },
      { when: [{ status: /^504$/ }], type: 'http_response_timeout', means: 'the backend did not answer in time' },
    ],
  },
  {
    id: 'fastly',
    name: 'Fastly',
    kind: 'CDN',
    operator: 'vendor-and-site',
    refines: 'varnish',
    // docs.fastly.com/en/guides/common-503-errors ("503 Backend is unhealthy", "first byte timeout",
    // "Connection refused") and the Guru Mediation page with "Details: cache-<pop>-<id>";
    // X-Served-By: cache-<pop>… and X-Timer on every response.
    source: 'Fastly docs, "Common 503 errors"; X-Served-By / X-Timer on every response',
    ids: ['x-served-by', 'x-timer'],
    evidence: [
      { when: [{ header: 'x-served-by', match: /\bcache-[a-z0-9-]+/ }], shows: 'on-path', weight: 3, says: 'X-Served-By: cache-…' },
      { when: [{ header: 'x-timer', match: /^S\d+\.\d+,VS\d/ }], shows: 'on-path', weight: 2, says: 'X-Timer: S…,VS…' },
      { when: [{ body: /Guru Mediation/ }, { body: /Details: cache-/ }], shows: 'made', weight: 3, says: 'the page says "Guru Mediation … Details: cache-…"' },
    ],
    types: [
      { when: [{ body: /first byte timeout/i }], type: 'http_response_timeout', means: '"first byte timeout": the origin did not answer in time' },
      { when: [{ body: /Backend is unhealthy/i }], type: 'destination_unavailable', means: '"Backend is unhealthy": health checks marked the origin down' },
      { when: [{ body: /Connection refused/i }], type: 'connection_refused', means: '"Connection refused" by the origin' },
      { when: [{ body: /connection timed out/i }], type: 'connection_timeout', means: '"connection timed out" to the origin' },
    ],
  },
  {
    id: 'varnish',
    name: 'Varnish Cache',
    kind: 'cache',
    operator: 'site',
    // varnish-cache.org docs, builtin.vcl `vcl_backend_error` / `vcl_synth`: "Error 503 Backend fetch failed …
    // Guru Meditation: XID: … Varnish cache server"; X-Varnish and `Via: 1.1 varnish (Varnish/6.0)`.
    source: 'Varnish builtin.vcl (vcl_backend_error / vcl_synth page); X-Varnish header',
    ids: ['x-varnish'],
    evidence: [
      { when: [{ header: 'x-varnish', match: /^\d+( \d+)?$/ }], shows: 'on-path', weight: 3, says: 'X-Varnish header' },
      { when: [{ header: 'via', match: /varnish/i }], shows: 'on-path', weight: 2, says: 'Via: … varnish' },
      { when: [{ body: /Guru Meditation/ }, { body: /Varnish cache server/ }], shows: 'made', weight: 3, says: 'the page says "Guru Meditation … Varnish cache server"' },
    ],
    types: [{ when: [{ body: /Backend fetch failed/ }], type: 'http_protocol_error', means: '"Backend fetch failed": Varnish got no usable answer from its backend' }],
  },
  {
    id: 'akamai',
    name: 'Akamai',
    kind: 'CDN',
    operator: 'vendor-and-site',
    // techdocs.akamai.com "Error reference numbers" / "Reference #" pages ("Reference&#32;&#35;18.…", errors.edgesuite.net)
    // written by `Server: AkamaiGHost` edge servers.
    source: 'Akamai TechDocs, "Errors and reference numbers" (the "Reference #" page, AkamaiGHost)',
    evidence: [
      { when: [{ header: 'server', match: /^AkamaiGHost$/ }], shows: 'made', weight: 3, says: 'Server: AkamaiGHost' },
      { when: [{ body: /Reference&#32;&#35;[0-9a-f.]+|errors\.edgesuite\.net/ }], shows: 'made', weight: 3, says: 'the page carries an Akamai "Reference #"' },
      { when: [{ header: 'x-akamai-request-id' }], shows: 'on-path', weight: 3, says: 'X-Akamai-Request-ID header' },
    ],
    types: [
      { when: [{ status: /^504$/ }], type: 'http_response_timeout', means: 'the origin did not answer the edge in time' },
      { when: [{ body: /Zero size object/ }], type: 'connection_terminated', means: '"Zero size object": the origin closed without an answer' },
    ],
  },
  {
    id: 'azure-front-door',
    name: 'Azure Front Door',
    kind: 'CDN',
    operator: 'vendor-and-site',
    // learn.microsoft.com/azure/frontdoor/troubleshoot-issues ("503 errors from Azure Front Door"): every response carries
    // `X-Azure-Ref`; its own error page says "Our services aren't available right now".
    source: 'Microsoft Learn, "Troubleshoot Azure Front Door common issues" (503); X-Azure-Ref on every response',
    ids: ['x-azure-ref', 'x-msedge-ref'],
    evidence: [
      { when: [{ header: 'x-azure-ref' }], shows: 'on-path', weight: 3, says: 'X-Azure-Ref header' },
      { when: [{ header: 'x-msedge-ref' }], shows: 'on-path', weight: 2, says: 'X-MSEdge-Ref header' },
      { when: [{ body: /Our services aren(')?t available right now|Our services aren&#39;t available right now/ }], shows: 'made', weight: 3, says: 'the page says "Our services aren\'t available right now"' },
    ],
    types: [{ when: [{ status: /^503$/ }], type: 'destination_unavailable', means: 'Front Door could not get an answer from any origin' }],
  },
  {
    id: 'azure-application-gateway',
    name: 'Azure Application Gateway',
    kind: 'cloud load balancer',
    operator: 'site',
    // learn.microsoft.com/azure/application-gateway/application-gateway-troubleshooting-502 ("502 errors"):
    // the page ends "<hr><center>Microsoft-Azure-Application-Gateway/v2</center>" with the same Server header.
    source: 'Microsoft Learn, "Troubleshoot bad gateway errors in Application Gateway"',
    evidence: [
      { when: [{ header: 'server', match: /^Microsoft-Azure-Application-Gateway/ }], shows: 'made', weight: 3, says: 'Server: Microsoft-Azure-Application-Gateway' },
      { when: [{ body: /<center>Microsoft-Azure-Application-Gateway\/v\d<\/center>/ }], shows: 'made', weight: 3, says: 'the page is signed "Microsoft-Azure-Application-Gateway"' },
    ],
  },
  {
    id: 'heroku',
    name: 'Heroku router',
    kind: 'application platform',
    operator: 'vendor-and-site',
    // devcenter.heroku.com/articles/error-codes (H10 App crashed, H12 Request timeout, H13 …) and error-pages:
    // the router's "Application Error" page frames www.herokucdn.com/error-pages/application-error.html;
    // `Via: 1.1 vegur` (or heroku-router), NEL reports to heroku-nel.
    source: 'Heroku Dev Center, "Heroku Error Codes" and "Customizing Error Pages"',
    ids: ['x-request-id'],
    evidence: [
      { when: [{ header: 'via', match: /\b(vegur|heroku-router)\b/ }], shows: 'on-path', weight: 3, says: 'Via: 1.1 vegur / heroku-router' },
      { when: [{ header: 'report-to', match: /heroku-nel/ }], shows: 'on-path', weight: 3, says: 'Report-To: heroku-nel' },
      { when: [{ body: /herokucdn\.com\/error-pages\// }], shows: 'made', weight: 3, says: "the page frames Heroku's error page (herokucdn.com/error-pages)" },
    ],
    types: [
      { when: [{ body: /application-error\.html/ }, { status: /^503$/ }], type: 'destination_unavailable', means: 'the app crashed or did not answer the router in time (H10/H12/H13 in the app\'s log)' },
    ],
  },
  {
    id: 'vercel',
    name: 'Vercel',
    kind: 'application platform',
    operator: 'vendor-and-site',
    // vercel.com/docs/errors (FUNCTION_INVOCATION_TIMEOUT 504, NO_RESPONSE_FROM_FUNCTION 502, FUNCTION_INVOCATION_FAILED 500):
    // the platform's own answers carry `X-Vercel-Error: <CODE>`; every response `X-Vercel-Id` and `Server: Vercel`.
    source: 'Vercel docs, "Error codes"; X-Vercel-Id on every response',
    ids: ['x-vercel-id'],
    evidence: [
      { when: [{ header: 'x-vercel-id' }], shows: 'on-path', weight: 3, says: 'X-Vercel-Id header' },
      { when: [{ header: 'server', match: /^Vercel$/i }], shows: 'on-path', weight: 2, says: 'Server: Vercel' },
      { when: [{ header: 'x-vercel-error' }], shows: 'made', weight: 3, says: 'X-Vercel-Error header (the platform answered)' },
    ],
    types: [
      { when: [{ header: 'x-vercel-error', match: /^FUNCTION_INVOCATION_TIMEOUT$/ }], type: 'http_response_timeout', means: 'FUNCTION_INVOCATION_TIMEOUT: the function ran past its time limit' },
      { when: [{ header: 'x-vercel-error', match: /^NO_RESPONSE_FROM_FUNCTION$/ }], type: 'connection_terminated', means: 'NO_RESPONSE_FROM_FUNCTION: the function ended without an answer' },
      { when: [{ header: 'x-vercel-error', match: /^FUNCTION_INVOCATION_FAILED$/ }], type: 'http_protocol_error', means: 'FUNCTION_INVOCATION_FAILED: the function threw' },
    ],
  },
  {
    id: 'netlify',
    name: 'Netlify',
    kind: 'application platform',
    operator: 'vendor-and-site',
    // answers.netlify.com/t/netlify-function-invocations-fail-with-502-error-0-1-of-the-time/52673: the platform's
    // 502 is empty with `Server: Netlify` and `X-Nf-Request-Id: 01FW…` (a ULID); every response carries both.
    source: 'Netlify support forum, "Netlify Function invocations fail with 502 error" (headers of the platform\'s 502)',
    ids: ['x-nf-request-id'],
    evidence: [
      { when: [{ header: 'x-nf-request-id' }], shows: 'on-path', weight: 3, says: 'X-Nf-Request-Id header' },
      { when: [{ header: 'server', match: /^Netlify$/i }], shows: 'on-path', weight: 2, says: 'Server: Netlify' },
      { when: [{ header: 'server', match: /^Netlify$/i }, { status: /^50[234]$/ }, { body: /^\s*$/ }], shows: 'made', weight: 2, says: 'an empty 5xx with Server: Netlify' },
    ],
  },
  {
    id: 'nginx',
    name: 'nginx',
    kind: 'reverse proxy',
    operator: 'site',
    // nginx src/http/ngx_http_special_response.c: "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n
    // <center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.x</center>" (no version with server_tokens off).
    source: 'nginx source, src/http/ngx_http_special_response.c (ngx_http_error_502_page, ngx_http_error_tail)',
    evidence: [
      { when: [{ body: NGINX_PAGE }], shows: 'made', weight: 3, says: 'the page is signed "<hr><center>nginx"' },
      { when: [{ header: 'server', match: /^nginx(\/[\d.]+)?/ }], shows: 'on-path', weight: 2, says: 'Server: nginx' },
    ],
    types: [{ when: [{ status: /^504$/ }], type: 'http_response_timeout', means: '504 Gateway Time-out: the upstream did not answer within proxy_read_timeout' }],
  },
  {
    id: 'ingress-nginx',
    name: 'Kubernetes ingress-nginx',
    kind: 'reverse proxy',
    operator: 'site',
    refines: 'nginx',
    // kubernetes.github.io/ingress-nginx/user-guide/nginx-configuration/configmap/ (hsts-max-age default 15724800,
    // server-tokens default false): nginx's page without a version, HSTS "max-age=15724800; includeSubDomains".
    source: 'ingress-nginx docs, ConfigMap defaults (hsts-max-age 15724800, server-tokens false)',
    evidence: [
      { when: [{ header: 'strict-transport-security', match: /^max-age=15724800; includeSubDomains$/ }], shows: 'on-path', weight: 2, says: 'HSTS max-age=15724800 (ingress-nginx\'s default)' },
      { when: [{ body: /<hr><center>nginx<\/center>/ }, { header: 'strict-transport-security', match: /^max-age=15724800/ }], shows: 'made', weight: 3, says: "nginx's page without a version, with ingress-nginx's default HSTS" },
    ],
    types: [{ when: [{ status: /^503$/ }], type: 'destination_unavailable', means: '503: the Service has no ready endpoints' }],
  },
  {
    id: 'apache',
    name: 'Apache httpd',
    kind: 'reverse proxy',
    operator: 'site',
    // httpd modules/http/http_protocol.c (get_canned_error_string) and mod_proxy: "<title>502 Proxy Error</title>",
    // "The proxy server received an invalid response from an upstream server", "<address>Apache/2.4… Server at … Port …</address>".
    source: 'Apache httpd source, modules/http/http_protocol.c canned error pages and mod_proxy "Proxy Error"',
    evidence: [
      { when: [{ body: /<address>Apache(\/[\d.]+)?[^<]*Server at [^<]+ Port \d+<\/address>/ }], shows: 'made', weight: 3, says: 'the page is signed "<address>Apache … Server at … Port …"' },
      { when: [{ body: /The proxy server received an invalid\s+response from an upstream server/ }], shows: 'made', weight: 2, says: 'the page says "The proxy server received an invalid response from an upstream server"' },
      { when: [{ header: 'server', match: /^Apache\b/ }], shows: 'on-path', weight: 2, says: 'Server: Apache' },
    ],
    types: [
      { when: [{ body: /Error reading from remote server/ }], type: 'http_response_incomplete', means: '"Error reading from remote server"' },
      { when: [{ status: /^503$/ }, { body: /Service Unavailable/ }], type: 'connection_refused', means: "mod_proxy's 503: it could not connect to the backend" },
      { when: [{ status: /^504$/ }], type: 'http_response_timeout', means: 'the backend did not answer within ProxyTimeout' },
    ],
  },
  {
    id: 'haproxy',
    name: 'HAProxy',
    kind: 'reverse proxy',
    operator: 'site',
    // haproxy src/http_htx.c / include/haproxy/http-t.h `http_err_msgs`: "<html><body><h1>503 Service Unavailable</h1>\n
    // No server is available to handle this request.\n</body></html>", 502 "The server returned an invalid or incomplete
    // response.", 504 "The server didn't respond in time."; no Server header.
    source: 'HAProxy source, http_err_msgs (src/http.c)',
    evidence: [
      { when: [{ body: /^<html><body><h1>50[234] [^<]+<\/h1>\n(No server is available to handle this request\.|The server returned an invalid or incomplete response\.|The server didn't respond in time\.)\n<\/body><\/html>/ }], shows: 'made', weight: 3, says: "HAProxy's built-in error message" },
    ],
    types: [
      { when: [{ body: /No server is available/ }], type: 'destination_unavailable', means: '"No server is available to handle this request"' },
      { when: [{ body: /invalid or incomplete response/ }], type: 'http_protocol_error', means: '"The server returned an invalid or incomplete response"' },
      { when: [{ body: /didn't respond in time/ }], type: 'http_response_timeout', means: '"The server didn\'t respond in time"' },
    ],
  },
  {
    id: 'envoy',
    name: 'Envoy',
    kind: 'reverse proxy',
    operator: 'site',
    // envoyproxy.io docs (router filter local replies; response flags UF, UH, UT): "upstream connect error or
    // disconnect/reset before headers. reset reason: connection failure", "no healthy upstream", "upstream request timeout".
    source: 'Envoy docs, router filter local replies and response flags (UF, UH, UT)',
    evidence: [
      { when: [{ body: /^(upstream connect error or disconnect\/reset before headers\.|no healthy upstream$|upstream request timeout$)/ }], shows: 'made', weight: 3, says: "Envoy's local reply words" },
      { when: [{ header: 'server', match: /^envoy$/ }], shows: 'on-path', weight: 2, says: 'Server: envoy' },
      { when: [{ header: 'x-envoy-upstream-service-time' }], shows: 'on-path', weight: 3, says: 'X-Envoy-Upstream-Service-Time header' },
      { when: [{ proxyStatus: /^envoy$/i }], shows: 'on-path', weight: 3, says: 'a Proxy-Status member named envoy' },
    ],
    types: [
      { when: [{ body: /connection failure, transport failure reason: delayed connect error: 111|Connection refused/ }], type: 'connection_refused', means: 'the upstream refused the connection' },
      { when: [{ body: /reset reason: connection termination|reset reason: remote reset/ }], type: 'connection_terminated', means: 'the upstream closed the connection before answering' },
      { when: [{ body: /reset reason: connection timeout/ }], type: 'connection_timeout', means: 'connecting to the upstream timed out' },
      { when: [{ body: /no healthy upstream/ }], type: 'destination_unavailable', means: '"no healthy upstream": every endpoint is marked down' },
      { when: [{ body: /upstream request timeout/ }], type: 'http_response_timeout', means: '"upstream request timeout"' },
    ],
  },
  {
    id: 'istio',
    name: 'Istio (Envoy sidecar / gateway)',
    kind: 'service mesh',
    operator: 'site',
    refines: 'envoy',
    // istio.io/latest/docs/ops/common-problems/network-issues/ (503 "upstream connect error or disconnect/reset before
    // headers"); Istio's Envoy answers with `server: istio-envoy` and adds x-envoy-decorator-operation.
    source: 'Istio docs, "Traffic Management Problems" (503 upstream connect error); server: istio-envoy',
    evidence: [
      { when: [{ header: 'server', match: /^istio-envoy$/ }], shows: 'on-path', weight: 3, says: 'Server: istio-envoy' },
      { when: [{ header: 'x-envoy-decorator-operation' }], shows: 'on-path', weight: 2, says: 'X-Envoy-Decorator-Operation header' },
      { when: [{ header: 'server', match: /^istio-envoy$/ }, { body: /^(upstream connect error|no healthy upstream|upstream request timeout)/ }], shows: 'made', weight: 3, says: "Envoy's local reply from Istio's proxy" },
    ],
  },
  {
    id: 'traefik',
    name: 'Traefik',
    kind: 'reverse proxy',
    operator: 'site',
    // traefik pkg/proxy/httputil/proxy.go ErrorHandler: `w.WriteHeader(status); w.Write([]byte(http.StatusText(status)))`
    // — a text/plain body that is exactly "Bad Gateway" / "Gateway Timeout" (no newline), no Server header.
    source: 'Traefik source, pkg/proxy/httputil (ErrorHandler writes http.StatusText)',
    evidence: [
      { when: [{ body: /^(Bad Gateway|Gateway Timeout|Service Unavailable)$/ }, { noHeader: 'server' }], shows: 'made', weight: 2, says: 'a bare "Bad Gateway" text body without a Server header' },
    ],
    types: [
      { when: [{ status: /^504$/ }], type: 'http_response_timeout', means: 'the backend did not answer in time' },
      { when: [{ status: /^503$/ }], type: 'destination_unavailable', means: 'no server available in the service' },
    ],
  },
  {
    id: 'caddy',
    name: 'Caddy',
    kind: 'reverse proxy',
    operator: 'site',
    // caddyserver.com/docs/caddyfile/directives/reverse_proxy: an upstream it cannot reach gives an empty 502
    // ("handle_errors" to change it); Caddy sets `Server: Caddy` on its answers.
    source: 'Caddy docs, reverse_proxy (errors are an empty 502 unless handle_errors); Server: Caddy',
    evidence: [
      { when: [{ header: 'server', match: /^Caddy$/ }], shows: 'on-path', weight: 3, says: 'Server: Caddy' },
      { when: [{ header: 'server', match: /^Caddy$/ }, { status: /^50[234]$/ }, { body: /^\s*$/ }], shows: 'made', weight: 3, says: 'an empty 5xx with Server: Caddy' },
    ],
  },
  {
    id: 'squid',
    name: 'Squid',
    kind: 'forward proxy',
    operator: 'local',
    // squid errors/templates (ERR_CONNECT_FAIL, ERR_DNS_FAIL, ERR_READ_TIMEOUT): "ERROR: The requested URL could not be
    // retrieved", `X-Squid-Error: ERR_CONNECT_FAIL 111`, `Via: 1.1 host (squid/6.x)`, `Server: squid/6.x`.
    source: 'Squid error templates (errors/templates) and the X-Squid-Error header',
    ids: ['x-squid-error'],
    evidence: [
      { when: [{ header: 'x-squid-error' }], shows: 'made', weight: 3, says: 'X-Squid-Error header' },
      { when: [{ body: /The requested URL could not be retrieved/ }], shows: 'made', weight: 3, says: 'the page says "The requested URL could not be retrieved"' },
      { when: [{ header: 'via', match: /\(squid\/[\d.]+\)/ }], shows: 'on-path', weight: 3, says: 'Via: … (squid/…)' },
      { when: [{ header: 'server', match: /^squid\b/ }], shows: 'on-path', weight: 2, says: 'Server: squid' },
    ],
    types: [
      { when: [{ header: 'x-squid-error', match: /^ERR_CONNECT_FAIL 111$/ }], type: 'connection_refused', means: 'ERR_CONNECT_FAIL 111: the server refused the connection' },
      { when: [{ header: 'x-squid-error', match: /^ERR_CONNECT_FAIL 110$/ }], type: 'connection_timeout', means: 'ERR_CONNECT_FAIL 110: connecting timed out' },
      { when: [{ header: 'x-squid-error', match: /^ERR_DNS_FAIL/ }], type: 'dns_error', means: 'ERR_DNS_FAIL: the name could not be resolved' },
      { when: [{ header: 'x-squid-error', match: /^ERR_READ_TIMEOUT/ }], type: 'http_response_timeout', means: 'ERR_READ_TIMEOUT: the server did not answer in time' },
      { when: [{ header: 'x-squid-error', match: /^ERR_ZERO_SIZE_OBJECT/ }], type: 'connection_terminated', means: 'ERR_ZERO_SIZE_OBJECT: the server closed without an answer' },
    ],
  },
  {
    id: 'gatewise',
    name: 'Gatewise',
    kind: 'gateway',
    operator: 'site',
    // This project: src/failure/render.ts writes the text body ("Error type: …", "Request id: …"), the problem+json type
    // `tag:gatewise,2026:error:`, X-Request-Id; src/gateway adds `Via: 1.1 <name>` and a Proxy-Status member (default name "gatewise").
    source: 'Gatewise, src/failure/render.ts and docs/errors.md',
    ids: ['x-request-id'],
    evidence: [
      { when: [{ proxyStatus: /gatewise/i }], shows: 'on-path', weight: 3, says: 'a Proxy-Status member named gatewise…' },
      { when: [{ header: 'via', match: /\bgatewise/i }], shows: 'on-path', weight: 2, says: 'Via: … gatewise' },
      { when: [{ body: /^Error type: [a-z_]+\nRequest id: /m }], shows: 'made', weight: 3, says: 'the page says "Error type: … Request id: …"' },
      { when: [{ body: /"type":"tag:gatewise,2026:error:/ }], shows: 'made', weight: 3, says: 'a problem+json type tag:gatewise…' },
      { when: [{ body: /quote this request id/ }, { body: /Error type: <code>/ }], shows: 'made', weight: 3, says: "Gatewise's HTML error page" },
    ],
  },
];

/** The fingerprint of an id (`cloudflare`, `nginx`…). */
export function fingerprint(id: string): Fingerprint | undefined {
  return FINGERPRINTS.find((f) => f.id === id);
}
