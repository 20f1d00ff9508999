/** A browser page only visits: it never registers a share (browser-client/build.mjs, visitorOnly). */
export function listenOnServer(): never {
  throw new Error('a browser page does not serve shares');
}
