/**
 * Beam shows the app in a frame of the share's own bootstrap page. An app
 * that forbids all framing (`X-Frame-Options: DENY`, CSP `frame-ancestors
 * 'none'`, as Django does by default) would show a blank frame, so responses
 * for that frame allow the share's own origin instead: SAMEORIGIN and
 * 'self'. Other sites still cannot frame the app.
 */
export function frameableHeaders(headers: Array<[string, string]>): Array<[string, string]> {
  return headers.map(([name, value]): [string, string] => {
    const lower = name.toLowerCase();
    if (lower === 'x-frame-options' && value.trim().toUpperCase() === 'DENY') return [name, 'SAMEORIGIN'];
    if (lower === 'content-security-policy' && /frame-ancestors\s+'none'/i.test(value))
      return [name, value.replace(/frame-ancestors\s+'none'/gi, "frame-ancestors 'self'")];
    return [name, value];
  });
}
