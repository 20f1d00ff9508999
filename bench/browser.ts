/**
 * A share in a browser, measured. In one run, from inside Chromium
 * (Debian's, through playwright-core):
 *   direct   the page served by the origin itself;
 *   framed   the same page in a frame of another page of the origin's, no
 *            Beam: what a frame alone costs, the floor of any design that
 *            shows the app in a frame of its own page (as the p2p page does);
 *   p2p      the share opened in the bootstrap page: Service Worker, page,
 *            data channel to the agent (`beam serve` + `beam http`);
 *   top      a new visitor of a `beam serve --browser-first-load top`: the
 *            app's first document top-level through the gateway, the page
 *            joining after it; its download and fetches once the worker
 *            carries them peer to peer;
 *   gateway  the same share through the gateway's HTTP path (a second
 *            `beam serve --no-browser-p2p` with its own `beam http`).
 * Prints the app's first content after navigation (a new visitor: a fresh
 * browser context, so the Service Worker installs too), MB/s for a download
 * and p50/p99 of sequential 1 KiB fetches, each the median of --reps runs,
 * and the ratios p2p / gateway and p2p / direct; and a p2p visitor back in
 * a new tab (the worker running), to an app that set no cookie (the page's
 * first stage) and to one with a session cookie in the page's jar (none).
 *
 * --visitors more new visitors a path (first content only) sharpen the
 * first-content medians the targets' ratios are made of.
 *
 *   npm run build && node dist/bench/browser.js [--reps 3] [--visitors 8] [--mib 64] [--requests 200]
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus } from 'node:os';
import { chromium, type Frame, type Page } from 'playwright-core';
import { numberArg, startJson } from '../test/helpers/services.js';
import { atMost, reportTargets } from './targets.js';

const REPS = numberArg('--reps', 3);
const MIB = numberArg('--mib', 64);
const REQUESTS = numberArg('--requests', 200);
/**
 * More new visitors a path, first content only, interleaved after the full
 * runs: a run-to-run spread of a third needs more than three visitors for the
 * targets' ratios (docs/benchmarks.md, session 37).
 */
const VISITORS = numberArg('--visitors', 8);
const CHROMIUM = process.env['BEAM_CHROMIUM'] ?? '/usr/bin/chromium';

interface Sample {
  /** ms from the top-level navigation's start to the app's first content (a script right after it in the HTML). */
  first: number;
  mbps: number;
  p50: number;
  p99: number;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/** The app's first content in a top-level document, ms after its navigation began. */
function topFirst(page: Page): Promise<number> {
  return page.evaluate(() => (window as unknown as { __shown: number }).__shown - performance.timeOrigin);
}

/** The app's first content in the page's frame, ms after the page's navigation began. */
async function framedFirst(page: Page): Promise<number> {
  await page.waitForFunction(() => (document.querySelector('iframe')?.contentWindow as { __shown?: number } | null)?.__shown !== undefined, null, {
    timeout: 20_000,
  });
  return page.evaluate(
    () => ((document.querySelector('iframe')?.contentWindow as unknown as { __shown?: number } | null)?.__shown ?? NaN) - performance.timeOrigin,
  );
}

function startOrigin(): Promise<http.Server> {
  const block = Buffer.alloc(1024 * 1024, 0x61);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/blob') {
      const mib = Number(url.searchParams.get('mib') ?? '1');
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': mib * block.length });
      let sent = 0;
      const more = (): void => {
        while (sent < mib) {
          sent++;
          if (!res.write(block)) {
            res.once('drain', more);
            return;
          }
        }
        res.end();
      };
      more();
      return;
    }
    if (url.pathname === '/session') {
      // An app that keeps a session cookie: its page's jar holds it, so a visitor back's page declines a first stage.
      res.writeHead(200, { 'content-type': 'text/html', 'set-cookie': 'sid=bench; Path=/; HttpOnly' });
      res.end('<!doctype html><title>bench</title><p>bench</p><script>window.__shown = performance.timeOrigin + performance.now()</script>');
      return;
    }
    if (url.pathname === '/framed') {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!doctype html><title>framed</title><style>body{margin:0}iframe{border:0;width:100%;height:100vh}</style><iframe src="/"></iframe>');
      return;
    }
    if (url.pathname === '/small') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('x'.repeat(1024));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html' });
    // The moment the content is in the document, on the page's own clock (performance.timeOrigin is absolute).
    res.end('<!doctype html><title>bench</title><p>bench</p><script>window.__shown = performance.timeOrigin + performance.now()</script>');
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/** In the bootstrap page: when its document and scripts arrived, and the page's own marks (page.ts). */
function pageMarks(): Record<string, number> {
  const out: Record<string, number> = {};
  const nav = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming | undefined;
  if (nav) out['document in'] = nav.responseEnd;
  const scripts = performance.getEntriesByType('resource').filter((r) => r.name.includes('/.beam/client/') && r.name.endsWith('.js'));
  if (scripts.length) out['scripts in'] = Math.max(...scripts.map((r) => (r as PerformanceResourceTiming).responseEnd));
  for (const m of performance.getEntriesByType('mark')) if (m.name.startsWith('beam:')) out[m.name] = m.startTime;
  return out;
}

/** Runs in the page (or the app's frame): one download and `requests` sequential small fetches. */
async function measure(frame: Frame | Page): Promise<Omit<Sample, 'first'>> {
  return frame.evaluate(
    async ({ mib, requests }) => {
      const t0 = performance.now();
      const res = await fetch(`/blob?mib=${mib}&t=${Math.random()}`);
      const reader = res.body!.getReader();
      let bytes = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        bytes += value.byteLength;
      }
      const seconds = (performance.now() - t0) / 1000;
      const times: number[] = [];
      for (let i = 0; i < requests; i++) {
        const s = performance.now();
        await (await fetch(`/small?i=${i}`)).text();
        times.push(performance.now() - s);
      }
      times.sort((a, b) => a - b);
      return { mbps: bytes / 1e6 / seconds, p50: times[Math.floor(times.length / 2)]!, p99: times[Math.floor(times.length * 0.99)]! };
    },
    { mib: MIB, requests: REQUESTS },
  );
}

async function main(): Promise<void> {
  const origin = await startOrigin();
  const port = (origin.address() as AddressInfo).port;
  const p2pServer = await startJson(
    process.execPath,
    ['bin/beam.js', 'serve', '--port', '0', '--host', '127.0.0.1', '--json', '--log-level', 'warn'],
    (e) => e['event'] === 'ready',
  );
  const gwServer = await startJson(
    process.execPath,
    ['bin/beam.js', 'serve', '--port', '0', '--host', '127.0.0.1', '--json', '--log-level', 'warn', '--no-browser-p2p', '--no-compress'],
    (e) => e['event'] === 'ready',
  );
  const p2pAgent = await startJson(
    process.execPath,
    ['bin/beam.js', 'http', String(port), '--server', `http://127.0.0.1:${p2pServer.event['port']}`, '--json', '--no-inspect'],
    (e) => e['event'] === 'ready',
  );
  // `--browser-first-load top`: the app's first document top-level through the gateway, the page joining after it.
  const topServer = await startJson(
    process.execPath,
    ['bin/beam.js', 'serve', '--port', '0', '--host', '127.0.0.1', '--json', '--log-level', 'warn', '--browser-first-load', 'top'],
    (e) => e['event'] === 'ready',
  );
  const topAgent = await startJson(
    process.execPath,
    ['bin/beam.js', 'http', String(port), '--server', `http://127.0.0.1:${topServer.event['port']}`, '--json', '--no-inspect'],
    (e) => e['event'] === 'ready',
  );
  const gwAgent = await startJson(
    process.execPath,
    ['bin/beam.js', 'http', String(port), '--server', `http://127.0.0.1:${gwServer.event['port']}`, '--json', '--no-inspect'],
    (e) => e['event'] === 'ready',
  );
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  const samples: Record<'direct' | 'p2p' | 'top' | 'gateway', Sample[]> = { direct: [], p2p: [], top: [], gateway: [] };
  /** First content of the extra visitors (--visitors), beside the full runs' samples. */
  const firsts: Record<keyof typeof samples, number[]> = { direct: [], p2p: [], top: [], gateway: [] };
  /** First content of the origin's page in a frame of another of its pages: no Beam, a frame's own cost. */
  const framed: number[] = [];
  /** First content for a visitor back in a new tab (worker installed, scripts cached): the app set no cookie, and with one. */
  const returning: number[] = [];
  const returningWithCookie: number[] = [];
  /** The p2p page's milestones (page.ts marks them), ms after navigation. */
  const marks: Record<string, number>[] = [];
  try {
    for (let rep = 0; rep < REPS; rep++) {
      const directContext = await browser.newContext();
      const direct = await directContext.newPage();
      await direct.goto(`http://127.0.0.1:${port}/`);
      const directFirst = await topFirst(direct);
      samples.direct.push({ first: directFirst, ...(await measure(direct)) });
      await directContext.close();

      const framedContext = await browser.newContext();
      const framedPage = await framedContext.newPage();
      await framedPage.goto(`http://127.0.0.1:${port}/framed`);
      framed.push(await framedFirst(framedPage));
      await framedContext.close();

      const context = await browser.newContext();
      const p2p = await context.newPage();
      await p2p.goto(p2pAgent.event['url'] as string);
      const p2pFirst = await framedFirst(p2p);
      await p2p.waitForFunction(() => (window as unknown as { __beam?: { path: string } }).__beam?.path === 'direct', null, { timeout: 20_000 });
      marks.push(await p2p.evaluate(pageMarks));
      samples.p2p.push({ first: p2pFirst, ...(await measure(p2p.frames()[1]!)) });
      // The same visitor again, in a new tab: the worker is installed and the page's scripts are cached.
      await p2p.close();
      const again = await context.newPage();
      await again.goto(p2pAgent.event['url'] as string);
      returning.push(await framedFirst(again));
      await context.close();
      // A visitor back to an app that set a session cookie (in the page's jar): its page declines the stage.
      const cookieContext = await browser.newContext();
      const withCookie = await cookieContext.newPage();
      await withCookie.goto(new URL('/session', p2pAgent.event['url'] as string).href);
      await withCookie.waitForFunction(() => (window as unknown as { __beam?: { path: string } }).__beam?.path === 'direct', null, { timeout: 20_000 });
      await withCookie.close();
      const backWithCookie = await cookieContext.newPage();
      await backWithCookie.goto(new URL('/session', p2pAgent.event['url'] as string).href);
      returningWithCookie.push(await framedFirst(backWithCookie));
      await cookieContext.close();

      // A new visitor with --browser-first-load top: the app top-level at once; measured once the page has
      // joined and the worker carries the document's requests peer to peer.
      const topContext = await browser.newContext();
      const top = await topContext.newPage();
      await top.goto(topAgent.event['url'] as string);
      const topLevelFirst = await topFirst(top);
      await top.waitForFunction(
        () => (window as unknown as { __beam?: { path: string } }).__beam?.path === 'direct' && navigator.serviceWorker.controller !== null,
        null,
        { timeout: 20_000 },
      );
      samples.top.push({ first: topLevelFirst, ...(await measure(top)) });
      await topContext.close();

      const gwContext = await browser.newContext();
      const gateway = await gwContext.newPage();
      await gateway.goto(gwAgent.event['url'] as string);
      const gwFirst = await topFirst(gateway);
      samples.gateway.push({ first: gwFirst, ...(await measure(gateway)) });
      await gwContext.close();
    }
    // More new visitors, first content only, each path in turn.
    const visit = async (url: string, first: (page: Page) => Promise<number>): Promise<number> => {
      const context = await browser.newContext();
      try {
        const page = await context.newPage();
        await page.goto(url);
        return await first(page);
      } finally {
        await context.close();
      }
    };
    for (let i = 0; i < VISITORS; i++) {
      firsts.direct.push(await visit(`http://127.0.0.1:${port}/`, topFirst));
      framed.push(await visit(`http://127.0.0.1:${port}/framed`, framedFirst));
      firsts.p2p.push(await visit(p2pAgent.event['url'] as string, framedFirst));
      firsts.top.push(await visit(topAgent.event['url'] as string, topFirst));
      firsts.gateway.push(await visit(gwAgent.event['url'] as string, topFirst));
    }
  } finally {
    await browser.close();
    for (const p of [p2pAgent, gwAgent, topAgent, p2pServer, gwServer, topServer]) p.child.kill();
    origin.close();
  }
  type Path = keyof typeof samples;
  // First content: every new visitor's, the full runs' and the extra ones'; the rest: the full runs'.
  const m = (k: Path, f: keyof Sample): number =>
    f === 'first' ? median([...samples[k].map((x) => x.first), ...firsts[k]]) : median(samples[k].map((x) => x[f]));
  const row = (name: string, k: Path): string =>
    `| ${name} | ${m(k, 'first').toFixed(0)} | ${m(k, 'mbps').toFixed(1)} | ${m(k, 'p50').toFixed(2)} | ${m(k, 'p99').toFixed(2)} |`;
  console.log(
    `# A share in Chromium: ${cpus().length} CPUs, Node ${process.version}, median of ${REPS}; ${MIB} MiB download, ${REQUESTS} sequential 1 KiB fetches; first content: median of ${REPS + VISITORS} new visitors a path\n`,
  );
  console.log('| path | first content ms | download MB/s | 1 KiB p50 ms | 1 KiB p99 ms |');
  console.log('|---|---|---|---|---|');
  console.log(row('direct (the origin itself)', 'direct'));
  console.log(`| the same in a frame of the origin's own page, no Beam | ${median(framed).toFixed(0)} | | | |`);
  console.log(row('peer to peer (Service Worker, data channel)', 'p2p'));
  console.log(row('peer to peer, `--browser-first-load top` (the app top-level, the page joins after it)', 'top'));
  console.log(row('gateway (HTTP path)', 'gateway'));
  console.log('');
  const names = [...new Set(marks.flatMap((m) => Object.keys(m)))].sort(
    (a, b) => median(marks.map((m) => m[a] ?? NaN)) - median(marks.map((m) => m[b] ?? NaN)),
  );
  console.log(`p2p page, ms after navigation (median): ${names.map((n) => `${n} ${median(marks.map((m) => m[n] ?? NaN)).toFixed(0)}`).join(', ')}`);
  console.log(
    `p2p, a visitor back in a new tab: first content ${median(returning).toFixed(0)} ms, ${(median(returning) / m('gateway', 'first')).toFixed(2)}x the gateway's` +
      ` (the page's first stage); an app with a session cookie in the page's jar ${median(returningWithCookie).toFixed(0)} ms, ${(median(returningWithCookie) / m('gateway', 'first')).toFixed(2)}x (no stage: the worker waits for the page's tunnel)`,
  );
  console.log(
    `a frame's own cost, no Beam: first content ${(median(framed) / m('direct', 'first')).toFixed(2)}x the same page top-level (the floor of the p2p page's ratio; the p2p page's is ${(m('p2p', 'first') / m('gateway', 'first')).toFixed(2)}x)`,
  );
  console.log(`p2p / gateway: download ${(m('p2p', 'mbps') / m('gateway', 'mbps')).toFixed(2)}x, p50 ${(m('p2p', 'p50') / m('gateway', 'p50')).toFixed(2)}x`);
  console.log(
    `p2p / direct: download ${(m('p2p', 'mbps') / m('direct', 'mbps')).toFixed(2)}x, added p50 ${(m('p2p', 'p50') - m('direct', 'p50')).toFixed(2)} ms`,
  );
  reportTargets([
    atMost("browser: the app's first content, peer to peer / the gateway path's", m('p2p', 'first') / m('gateway', 'first'), 1.5, 'ratio'),
    atMost("browser, --browser-first-load top: the app's first content / the gateway path's", m('top', 'first') / m('gateway', 'first'), 1.5, 'ratio'),
  ]);
}

await main();
