import type { ProxyErrorType } from '../../src/failure/index.js';

/**
 * What each vendor's own 502/503/504 answers look like on the wire, headers and body, written
 * from each vendor's documentation and answers seen in the field (cited per fixture). Served by
 * a local server in vendors.test.ts; `gatewise diagnose` must name the vendor.
 */
export interface VendorFixture {
  /** Unique name of the fixture (`cloudflare-502`). */
  name: string;
  status: number;
  /** Reason phrase, as the vendor sends it. */
  reason?: string;
  headers: ReadonlyArray<readonly [string, string]>;
  body: string;
  /** Serve over TLS (the lab CA's localhost certificate). */
  tls?: boolean;
  expect: {
    /** The fingerprint id that must be named as the hop that wrote the answer (undefined: none did). */
    madeBy: string | undefined;
    /** Fingerprint ids that must be seen on the path. */
    onPath?: readonly string[];
    /** The RFC 9209 type the vendor's words map to. */
    type?: ProxyErrorType;
  };
}

const DATE = ['date', 'Thu, 03 Dec 2026 09:00:00 GMT'] as const;

// Cloudflare's 502 page (developers.cloudflare.com/support/troubleshooting/http-status-codes/cloudflare-5xx-errors/
// error-502-and-504/: "Bad gateway … Cloudflare Ray ID", the Browser / Cloudflare / Host diagram with Host marked "Error").
const CLOUDFLARE_502 = `<!DOCTYPE html>
<!--[if lt IE 7]> <html class="no-js ie6 oldie" lang="en-US"> <![endif]-->
<!--[if gt IE 8]><!--> <html class="no-js" lang="en-US"> <!--<![endif]-->
<head>
<title>example.com | 502: Bad gateway</title>
<meta charset="UTF-8" />
<meta name="viewport" content="width=device-width,initial-scale=1" />
<link rel="stylesheet" id="cf_styles-css" href="/cdn-cgi/styles/main.css" />
</head>
<body>
<div id="cf-wrapper">
    <div id="cf-error-details" class="p-0">
        <header class="mx-auto pt-10 lg:pt-6 lg:px-8 w-240 lg:w-full mb-8">
            <h1 class="inline-block sm:block sm:mb-2 font-light text-60 lg:text-4xl text-black-dark leading-tight mr-2">
              <span class="inline-block">Bad gateway</span>
              <span class="code-label">Error code 502</span>
            </h1>
            <div>
               Visit <a href="https://www.cloudflare.com/5xx-error-landing?utm_source=errorcode_502&utm_campaign=example.com" target="_blank" rel="noopener noreferrer">cloudflare.com</a> for more information.
            </div>
            <div class="mt-3">2026-12-03 09:00:00 UTC</div>
        </header>
        <div class="my-4 bg-gradient-gray">
            <div class="w-240 lg:w-full mx-auto">
                <div class="clearfix md:px-8">
<div id="cf-browser-status" class=" relative w-1/3 md:w-full py-15 md:p-0 md:py-8 md:text-left md:border-solid md:border-0 md:border-b md:border-gray-400 overflow-hidden float-left md:float-none text-center">
  <span class="md:block w-full truncate">You</span>
  <h3 class="md:inline-block mt-3 md:mt-0 text-2xl text-gray-600 font-light leading-1.3">Browser</h3>
  <span class="leading-1.3 text-2xl text-green-success">Working</span>
</div>
<div id="cf-cloudflare-status" class=" relative w-1/3 md:w-full py-15 md:p-0 md:py-8 md:text-left md:border-solid md:border-0 md:border-b md:border-gray-400 overflow-hidden float-left md:float-none text-center">
  <span class="md:block w-full truncate">Frankfurt</span>
  <h3 class="md:inline-block mt-3 md:mt-0 text-2xl text-gray-600 font-light leading-1.3">Cloudflare</h3>
  <span class="leading-1.3 text-2xl text-green-success">Working</span>
</div>
<div id="cf-host-status" class="cf-error-source relative w-1/3 md:w-full py-15 md:p-0 md:py-8 md:text-left md:border-solid md:border-0 md:border-b md:border-gray-400 overflow-hidden float-left md:float-none text-center">
  <span class="md:block w-full truncate">example.com</span>
  <h3 class="md:inline-block mt-3 md:mt-0 text-2xl text-gray-600 font-light leading-1.3">Host</h3>
  <span class="leading-1.3 text-2xl text-red-error">Error</span>
</div>
                </div>
            </div>
        </div>
        <div class="w-240 lg:w-full mx-auto mb-8 lg:px-8">
            <div class="clearfix">
                <div class="w-1/2 md:w-full float-left pr-6 md:pb-10 md:pr-0 leading-relaxed">
                    <h2 class="text-3xl font-normal leading-1.3 mb-4">What happened?</h2>
                    <p>The web server reported a bad gateway error.</p>
                </div>
                <div class="w-1/2 md:w-full float-left leading-relaxed">
                    <h2 class="text-3xl font-normal leading-1.3 mb-4">What can I do?</h2>
                    <p class="mb-6">Please try again in a few minutes.</p>
                </div>
            </div>
        </div>
        <div class="cf-error-footer cf-wrapper w-240 lg:w-full py-10 sm:py-4 sm:px-8 mx-auto text-center sm:text-left border-solid border-0 border-t border-gray-300">
  <p class="text-13">
    <span class="cf-footer-item sm:block sm:mb-1">Cloudflare Ray ID: <strong class="font-semibold">8ec3a1b2c4d5e6f7</strong></span>
    <span class="cf-footer-separator sm:hidden">&bull;</span>
    <span id="cf-footer-item-ip" class="cf-footer-item sm:block sm:mb-1">Your IP: 203.0.113.7</span>
    <span class="cf-footer-separator sm:hidden">&bull;</span>
    <span class="cf-footer-item sm:block sm:mb-1"><span>Performance &amp; security by</span> <a rel="noopener noreferrer" href="https://www.cloudflare.com/5xx-error-landing" id="brand_link" target="_blank">Cloudflare</a></span>
  </p>
</div>
    </div>
</div>
</body>
</html>
`;

// nginx's own page (src/http/ngx_http_special_response.c), with the MSIE padding nginx appends.
const nginxPage = (code: string, tail: string): string =>
  `<html>\r\n<head><title>${code}</title></head>\r\n<body>\r\n<center><h1>${code}</h1></center>\r\n<hr><center>${tail}</center>\r\n</body>\r\n</html>\r\n` +
  '<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n'.repeat(6);

export const VENDOR_FIXTURES: readonly VendorFixture[] = [
  {
    name: 'cloudflare-502',
    status: 502,
    reason: 'Bad Gateway',
    headers: [DATE, ['content-type', 'text/html; charset=UTF-8'], ['connection', 'close'], ['cache-control', 'private, max-age=0, no-store, no-cache, must-revalidate, post-check=0, pre-check=0'], ['expires', 'Thu, 01 Jan 1970 00:00:01 GMT'], ['referrer-policy', 'same-origin'], ['x-frame-options', 'SAMEORIGIN'], ['server', 'cloudflare'], ['cf-ray', '8ec3a1b2c4d5e6f7-FRA']],
    body: CLOUDFLARE_502,
    expect: { madeBy: 'cloudflare', onPath: ['cloudflare'] },
  },
  {
    // Cloudflare 522 (same page family): "Connection timed out", Host marked Error.
    name: 'cloudflare-522',
    status: 522,
    reason: '',
    headers: [DATE, ['content-type', 'text/html; charset=UTF-8'], ['server', 'cloudflare'], ['cf-ray', '8ec3a1b2c4d5e6f8-AMS']],
    body: CLOUDFLARE_502.replace(/502: Bad gateway/, '522: Connection timed out').replace(/Bad gateway/g, 'Connection timed out').replace(/Error code 502/, 'Error code 522'),
    expect: { madeBy: 'cloudflare', type: 'connection_timeout' },
  },
  {
    // The origin's own 502 passed through Cloudflare: CF-RAY and Server: cloudflare, but the origin's body.
    name: 'cloudflare-passes-origin-502',
    status: 502,
    headers: [DATE, ['content-type', 'application/json'], ['server', 'cloudflare'], ['cf-ray', '8ec3a1b2c4d5e6f9-LHR'], ['cf-cache-status', 'DYNAMIC']],
    body: '{"error":"upstream payment service unavailable"}',
    expect: { madeBy: undefined, onPath: ['cloudflare'] },
  },
  {
    // AWS ALB (docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-troubleshooting.html, "HTTP 502"):
    // Server: awselb/2.0 and the bare page.
    name: 'aws-alb-502',
    status: 502,
    reason: 'Bad Gateway',
    headers: [DATE, ['content-type', 'text/html'], ['content-length', '122'], ['connection', 'keep-alive'], ['server', 'awselb/2.0']],
    body: '<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n',
    expect: { madeBy: 'aws-alb' },
  },
  {
    name: 'aws-alb-503',
    status: 503,
    reason: 'Service Temporarily Unavailable',
    headers: [DATE, ['content-type', 'text/html'], ['server', 'awselb/2.0']],
    body: '<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n</body>\r\n</html>\r\n',
    expect: { madeBy: 'aws-alb', type: 'destination_unavailable' },
  },
  {
    // CloudFront (docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/http-502-bad-gateway.html).
    name: 'cloudfront-502',
    status: 502,
    reason: 'Bad Gateway',
    headers: [DATE, ['content-type', 'text/html'], ['server', 'CloudFront'], ['x-cache', 'Error from cloudfront'], ['via', '1.1 3f0a1c2b9d8e7f6a5b4c3d2e1f0a9b8c.cloudfront.net (CloudFront)'], ['x-amz-cf-pop', 'FRA56-P5'], ['x-amz-cf-id', 'Xk3m2dVb7Q9yT0nA4sLh8Jp1wEoRcUi6fZg5HtBqMvYxNaKd2lSe3g==']],
    body:
      '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN" "http://www.w3.org/TR/html4/loose.dtd">\n<HTML><HEAD><META HTTP-EQUIV="Content-Type" CONTENT="text/html; charset=iso-8859-1">\n<TITLE>ERROR: The request could not be satisfied</TITLE>\n</HEAD><BODY>\n<H1>502 ERROR</H1>\n<H2>The request could not be satisfied.</H2>\n<HR noshade size="1px">\nCloudFront wasn\'t able to connect to the origin.\nWe can\'t connect to the server for this app or website at this time. There might be too much traffic or a configuration error. Try again later, or contact the app or website owner.\n<BR clear="all">\nIf you provide content to customers through CloudFront, you can find steps to troubleshoot and help prevent this error by reviewing the CloudFront documentation.\n<BR clear="all">\n<HR noshade size="1px">\n<PRE>\nGenerated by cloudfront (CloudFront)\nRequest ID: Xk3m2dVb7Q9yT0nA4sLh8Jp1wEoRcUi6fZg5HtBqMvYxNaKd2lSe3g==\n</PRE>\n<ADDRESS>\n</ADDRESS>\n</BODY></HTML>',
    expect: { madeBy: 'cloudfront', type: 'connection_refused' },
  },
  {
    // Google Front End / GCLB 502 page ("Error 502 (Server Error)!!1 … That’s an error."), Via: 1.1 google
    // (cloud.google.com/load-balancing/docs/https/troubleshooting-ext-https-lbs).
    name: 'google-gclb-502',
    status: 502,
    reason: 'Bad Gateway',
    headers: [DATE, ['content-type', 'text/html; charset=UTF-8'], ['referrer-policy', 'no-referrer'], ['content-length', '332'], ['via', '1.1 google'], ['alt-svc', 'h3=":443"; ma=2592000,h3-29=":443"; ma=2592000']],
    body:
      '\n<html><head>\n<meta http-equiv="content-type" content="text/html;charset=utf-8">\n<title>502 Server Error</title>\n</head>\n<body text=#000000 bgcolor=#ffffff>\n<h1>Error: Server Error</h1>\n<h2>The server encountered a temporary error and could not complete your request.<p>Please try again in 30 seconds.</h2>\n<h2></h2>\n</body></html>\n',
    expect: { madeBy: 'google', onPath: ['google'] },
  },
  {
    // The Google Front End's own page (App Engine / Cloud Run behind GFE).
    name: 'google-frontend-502',
    status: 502,
    reason: 'Bad Gateway',
    headers: [DATE, ['content-type', 'text/html; charset=UTF-8'], ['server', 'Google Frontend'], ['x-cloud-trace-context', '3c2f5e8a1b9d4c7e6f0a2b4c6d8e0f1a;o=1']],
    body:
      '<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <meta name=viewport content="initial-scale=1, minimum-scale=1, width=device-width">\n  <title>Error 502 (Server Error)!!1</title>\n  <style>*{margin:0;padding:0}html,code{font:15px/22px arial,sans-serif}</style>\n  <a href=//www.google.com/><span id=logo aria-label=Google></span></a>\n  <p><b>502.</b> <ins>That’s an error.</ins>\n  <p>The server encountered a temporary error and could not complete your request.<p>Please try again in 30 seconds.  <ins>That’s all we know.</ins>\n',
    expect: { madeBy: 'google', onPath: ['google'] },
  },
  {
    // Fastly (docs.fastly.com/en/guides/common-503-errors): synthetic 503 "first byte timeout", Guru Mediation page.
    name: 'fastly-503',
    status: 503,
    reason: 'first byte timeout',
    headers: [DATE, ['content-type', 'text/html; charset=utf-8'], ['retry-after', '0'], ['via', '1.1 varnish'], ['x-served-by', 'cache-fra-eddf8230045-FRA'], ['x-cache', 'MISS'], ['x-cache-hits', '0'], ['x-timer', 'S1764752400.123456,VS0,VE15001']],
    body:
      '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN"\n "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\n<html>\n  <head>\n    <title>503 first byte timeout</title>\n  </head>\n  <body>\n    <h1>Error 503 first byte timeout</h1>\n    <p>first byte timeout</p>\n    <h3>Guru Mediation:</h3>\n    <p>Details: cache-fra-eddf8230045-FRA 1764752415 2093829443</p>\n    <hr>\n    <p>Varnish cache server</p>\n  </body>\n</html>\n',
    expect: { madeBy: 'fastly', type: 'http_response_timeout' },
  },
  {
    // Varnish builtin.vcl vcl_backend_error page.
    name: 'varnish-503',
    status: 503,
    reason: 'Backend fetch failed',
    headers: [DATE, ['server', 'Varnish'], ['content-type', 'text/html; charset=utf-8'], ['retry-after', '5'], ['x-varnish', '32770'], ['age', '0'], ['via', '1.1 cache-1 (Varnish/7.4)']],
    body:
      '<!DOCTYPE html>\n<html>\n  <head>\n    <title>503 Backend fetch failed</title>\n  </head>\n  <body>\n    <h1>Error 503 Backend fetch failed</h1>\n    <p>Backend fetch failed</p>\n    <h3>Guru Meditation:</h3>\n    <p>XID: 32771</p>\n    <hr>\n    <p>Varnish cache server</p>\n  </body>\n</html>\n',
    expect: { madeBy: 'varnish' },
  },
  {
    // Akamai "Reference #" page (techdocs.akamai.com, error reference numbers), Server: AkamaiGHost.
    name: 'akamai-504',
    status: 504,
    reason: 'Gateway Time-out',
    headers: [['server', 'AkamaiGHost'], ['mime-version', '1.0'], ['content-type', 'text/html'], ['content-length', '176'], ['expires', 'Thu, 03 Dec 2026 09:00:00 GMT'], DATE, ['connection', 'close']],
    body: '<HTML><HEAD>\n<TITLE>Gateway Timeout</TITLE>\n</HEAD><BODY>\n<H1>Gateway Timeout</H1>\nThe proxy server did not receive a timely response from the upstream server.<P>\nReference&#32;&#35;30&#46;6b3c1602&#46;1764752400&#46;1a2b3c4d\n</BODY></HTML>\n',
    expect: { madeBy: 'akamai', type: 'http_response_timeout' },
  },
  {
    // Azure Front Door 503 (learn.microsoft.com/azure/frontdoor/troubleshoot-issues): X-Azure-Ref, "Our services aren't available right now".
    name: 'azure-front-door-503',
    status: 503,
    reason: 'Service Unavailable',
    headers: [DATE, ['content-type', 'text/html'], ['x-azure-ref', '20261203T090000Z-r1a2b3c4d5e6f7g8h9i0j1k2l3m4n5o6p7q8'], ['x-cache', 'CONFIG_NOCACHE']],
    body:
      '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Our services aren\'t available right now</title></head><body><h2>Our services aren\'t available right now</h2><p>We\'re working to restore all services as soon as possible. Please check back soon.</p>20261203T090000Z-r1a2b3c4d5e6f7g8h9i0j1k2l3m4n5o6p7q8</body></html>',
    expect: { madeBy: 'azure-front-door', type: 'destination_unavailable' },
  },
  {
    // Azure Application Gateway v2 502 (learn.microsoft.com/azure/application-gateway/application-gateway-troubleshooting-502).
    name: 'azure-application-gateway-502',
    status: 502,
    reason: 'Bad Gateway',
    headers: [DATE, ['content-type', 'text/html'], ['server', 'Microsoft-Azure-Application-Gateway/v2']],
    body: '<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>Microsoft-Azure-Application-Gateway/v2</center>\r\n</body>\r\n</html>\r\n',
    expect: { madeBy: 'azure-application-gateway' },
  },
  {
    // Heroku router's Application Error (devcenter.heroku.com/articles/error-codes H10/H12; error pages on herokucdn.com).
    name: 'heroku-503',
    status: 503,
    reason: 'Service Unavailable',
    headers: [['server', 'Cowboy'], ['report-to', '{"group":"heroku-nel","max_age":3600,"endpoints":[{"url":"https://nel.heroku.com/reports?ts=1764752400&sid=1b10b0ff-8a76-4548-befa-353fc6c6c045&s=abc"}]}'], ['nel', '{"report_to":"heroku-nel","max_age":3600,"success_fraction":0.005,"failure_fraction":0.05,"response_headers":["Via"]}'], ['connection', 'keep-alive'], ['pragma', 'no-cache'], ['cache-control', 'no-cache, no-store'], ['content-type', 'text/html; charset=utf-8'], DATE, ['via', '1.1 vegur']],
    body:
      '<!DOCTYPE html>\n\t<html>\n\t  <head>\n\t\t<meta name="viewport" content="width=device-width, initial-scale=1">\n\t\t<meta charset="utf-8">\n\t\t<title>Application Error</title>\n\t\t<style media="screen">\n\t\t  html,body,iframe {\n\t\t\tmargin: 0;\n\t\t\tpadding: 0;\n\t\t  }\n\t\t  html,body {\n\t\t\theight: 100%;\n\t\t\toverflow: hidden;\n\t\t  }\n\t\t  iframe {\n\t\t\twidth: 100%;\n\t\t\theight: 100%;\n\t\t\tborder: 0;\n\t\t  }\n\t\t</style>\n\t  </head>\n\t  <body>\n\t\t<iframe src="//www.herokucdn.com/error-pages/application-error.html"></iframe>\n\t  </body>\n\t</html>',
    expect: { madeBy: 'heroku', type: 'destination_unavailable' },
  },
  {
    // Vercel (vercel.com/docs/errors/FUNCTION_INVOCATION_TIMEOUT): X-Vercel-Error and the text body.
    name: 'vercel-504',
    status: 504,
    reason: 'Gateway Timeout',
    headers: [['cache-control', 'public, max-age=0, must-revalidate'], ['content-type', 'text/plain; charset=utf-8'], DATE, ['server', 'Vercel'], ['x-vercel-error', 'FUNCTION_INVOCATION_TIMEOUT'], ['x-vercel-id', 'fra1::iad1::7xk2p-1764752400000-3f9a1c2b4d5e']],
    body: 'An error occurred with your deployment\n\nFUNCTION_INVOCATION_TIMEOUT\n\nfra1::iad1::7xk2p-1764752400000-3f9a1c2b4d5e\n',
    expect: { madeBy: 'vercel', type: 'http_response_timeout' },
  },
  {
    // Netlify's platform 502 (answers.netlify.com/t/…/52673): empty, Server: Netlify, X-Nf-Request-Id.
    name: 'netlify-502',
    status: 502,
    reason: 'Bad Gateway',
    headers: [['server', 'Netlify'], ['x-nf-request-id', '01FWYDPYSG7948J52F2P6MCB3S'], DATE, ['content-length', '0']],
    body: '',
    expect: { madeBy: 'netlify' },
  },
  {
    name: 'nginx-502',
    status: 502,
    reason: 'Bad Gateway',
    headers: [['server', 'nginx/1.24.0'], DATE, ['content-type', 'text/html'], ['connection', 'keep-alive']],
    body: nginxPage('502 Bad Gateway', 'nginx/1.24.0'),
    expect: { madeBy: 'nginx' },
  },
  {
    name: 'nginx-504',
    status: 504,
    reason: 'Gateway Time-out',
    headers: [['server', 'nginx'], DATE, ['content-type', 'text/html']],
    body: nginxPage('504 Gateway Time-out', 'nginx'),
    expect: { madeBy: 'nginx', type: 'http_response_timeout' },
  },
  {
    // ingress-nginx: nginx's page without a version and its default HSTS (ConfigMap hsts-max-age 15724800), over TLS.
    name: 'ingress-nginx-503',
    status: 503,
    reason: 'Service Temporarily Unavailable',
    tls: true,
    headers: [DATE, ['content-type', 'text/html'], ['connection', 'keep-alive'], ['strict-transport-security', 'max-age=15724800; includeSubDomains']],
    body: nginxPage('503 Service Temporarily Unavailable', 'nginx'),
    expect: { madeBy: 'ingress-nginx', type: 'destination_unavailable' },
  },
  {
    // Apache httpd mod_proxy 502 (http_protocol.c canned page + mod_proxy reason).
    name: 'apache-502',
    status: 502,
    reason: 'Proxy Error',
    headers: [DATE, ['server', 'Apache/2.4.62 (Debian)'], ['content-type', 'text/html; charset=iso-8859-1']],
    body:
      '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n<title>502 Proxy Error</title>\n</head><body>\n<h1>Proxy Error</h1>\n<p>The proxy server received an invalid\r\nresponse from an upstream server.<br />\r\nThe proxy server could not handle the request<p>Reason: <strong>Error reading from remote server</strong></p></p>\n<hr>\n<address>Apache/2.4.62 (Debian) Server at www.example.com Port 80</address>\n</body></html>\n',
    expect: { madeBy: 'apache', type: 'http_response_incomplete' },
  },
  {
    // HAProxy http_err_msgs 503.
    name: 'haproxy-503',
    status: 503,
    reason: 'Service Unavailable',
    headers: [['content-length', '107'], ['cache-control', 'no-cache'], ['content-type', 'text/html']],
    body: '<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n',
    expect: { madeBy: 'haproxy', type: 'destination_unavailable' },
  },
  {
    name: 'haproxy-504',
    status: 504,
    reason: 'Gateway Time-out',
    headers: [['content-length', '92'], ['cache-control', 'no-cache'], ['content-type', 'text/html']],
    body: "<html><body><h1>504 Gateway Time-out</h1>\nThe server didn't respond in time.\n</body></html>\n",
    expect: { madeBy: 'haproxy', type: 'http_response_timeout' },
  },
  {
    // Envoy local reply (router filter; response flag UF).
    name: 'envoy-503',
    status: 503,
    reason: 'Service Unavailable',
    headers: [['content-length', '145'], ['content-type', 'text/plain'], DATE, ['server', 'envoy']],
    body: 'upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure, transport failure reason: delayed connect error: 111',
    expect: { madeBy: 'envoy', type: 'connection_refused' },
  },
  {
    // Istio's Envoy (istio.io/latest/docs/ops/common-problems/network-issues/).
    name: 'istio-503',
    status: 503,
    reason: 'Service Unavailable',
    headers: [['content-length', '19'], ['content-type', 'text/plain'], DATE, ['server', 'istio-envoy']],
    body: 'no healthy upstream',
    expect: { madeBy: 'istio', type: 'destination_unavailable' },
  },
  {
    // Traefik ErrorHandler: http.StatusText, no Server header.
    name: 'traefik-502',
    status: 502,
    reason: 'Bad Gateway',
    headers: [DATE, ['content-length', '11'], ['content-type', 'text/plain; charset=utf-8']],
    body: 'Bad Gateway',
    expect: { madeBy: 'traefik' },
  },
  {
    // Caddy reverse_proxy: an empty 502 with Server: Caddy.
    name: 'caddy-502',
    status: 502,
    reason: 'Bad Gateway',
    headers: [['server', 'Caddy'], DATE, ['content-length', '0']],
    body: '',
    expect: { madeBy: 'caddy' },
  },
  {
    // Squid ERR_CONNECT_FAIL (errors/templates/ERR_CONNECT_FAIL, X-Squid-Error).
    name: 'squid-503',
    status: 503,
    reason: 'Service Unavailable',
    headers: [['server', 'squid/6.10'], ['mime-version', '1.0'], DATE, ['content-type', 'text/html;charset=utf-8'], ['x-squid-error', 'ERR_CONNECT_FAIL 111'], ['vary', 'Accept-Language'], ['content-language', 'en'], ['x-cache', 'MISS from proxy.example.net'], ['x-cache-lookup', 'MISS from proxy.example.net:3128'], ['via', '1.1 proxy.example.net (squid/6.10)'], ['connection', 'close']],
    body:
      '<!DOCTYPE html PUBLIC "-//W3C//DTD HTML 4.01//EN" "http://www.w3.org/TR/html4/strict.dtd">\n<html><head>\n<meta type="copyright" content="Copyright (C) 1996-2024 The Squid Software Foundation and contributors">\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\n<title>ERROR: The requested URL could not be retrieved</title>\n</head><body id="ERR_CONNECT_FAIL">\n<div id="titles">\n<h1>ERROR</h1>\n<h2>The requested URL could not be retrieved</h2>\n</div>\n<hr>\n<div id="content">\n<p>The following error was encountered while trying to retrieve the URL: <a href="http://www.example.com/">http://www.example.com/</a></p>\n<blockquote id="error">\n<p><b>Connection to 93.184.215.14 failed.</b></p>\n</blockquote>\n<p id="sysmsg">The system returned: <i>(111) Connection refused</i></p>\n<p>The remote host or network may be down. Please try the request again.</p>\n</div>\n<hr>\n<div id="footer">\n<p>Generated Thu, 03 Dec 2026 09:00:00 GMT by proxy.example.net (squid/6.10)</p>\n</div>\n</body></html>\n',
    expect: { madeBy: 'squid', type: 'connection_refused' },
  },
  {
    // Gatewise under a custom name: found by its own page, and its Proxy-Status member names the hop.
    name: 'gatewise-502',
    status: 502,
    reason: 'Bad Gateway',
    headers: [['proxy-status', 'edge-7;error=connection_refused'], ['x-request-id', '00kdqfg-mx7cbej7-w'], ['cache-control', 'no-store'], ['content-type', 'text/plain; charset=utf-8']],
    body: '502 Connection Refused\nThe upstream server refused the connection: nothing is listening there.\nSide: the upstream server. Retrying may help if the problem was temporary.\nError type: connection_refused\nRequest id: 00kdqfg-mx7cbej7-w\n',
    expect: { madeBy: 'gatewise', type: 'connection_refused' },
  },
  {
    // A chain in Proxy-Status (RFC 9209 §2): the origin-side balancer failed, the CDN passed its 502 on.
    name: 'proxy-status-chain-502',
    status: 502,
    reason: 'Bad Gateway',
    headers: [['proxy-status', 'envoy;error=connection_timeout;next-hop="10.1.2.3:8080", "cdn.example";received-status=502'], ['server', 'envoy'], ['content-type', 'text/plain']],
    body: 'upstream connect error or disconnect/reset before headers. reset reason: connection timeout',
    expect: { madeBy: 'envoy', type: 'connection_timeout' },
  },
];
