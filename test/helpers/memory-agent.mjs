// A share (the library's share(), as built in dist/) in a child process that
// reports its memory when asked over IPC: the agent of a leak test. Run with
// --expose-gc, so each report is taken after a full collection.
import { share } from '../../dist/index.js';

const [target, server] = process.argv.slice(2);
const s = await share({ target, server, inspect: false });
process.send?.({ event: 'ready', name: s.name, url: s.url, link: s.link });
process.on('message', async (message) => {
  if (message === 'memory') {
    globalThis.gc?.();
    globalThis.gc?.();
    const { rss, heapUsed } = process.memoryUsage();
    process.send?.({ event: 'memory', rss, heap: heapUsed });
  } else if (message === 'close') {
    await s.close();
    process.exit(0);
  }
});
