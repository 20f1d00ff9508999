/**
 * Beam as a Vite plugin: `vite dev` shares its own dev server and prints the
 * link beside Vite's Local and Network lines.
 *
 * ```ts
 * // vite.config.ts
 * import beam from 'beam-tunnel/vite';
 * export default { plugins: [beam()] };                                  // the embedded default
 * export default { plugins: [beam({ server: 'https://beam.example.com', name: 'my-app' })] };
 * ```
 *
 * It takes the options of `share()` (the API's, as `beam http` takes flags),
 * with the target the dev server's own port once it listens. It lets the
 * share's hosts through Vite's host check (`server.allowedHosts`: the
 * embedded default's `*.localhost`, and `*.<domain>` of a server given), so
 * `hostHeader: 'preserve'` works too. HMR needs nothing more: a page opened
 * through the link carries Vite's HMR WebSocket peer to peer, or through the
 * gateway when it is not peer to peer. Only for `vite dev` (not build or
 * preview); the share closes with the dev server.
 */
import type { AddressInfo } from 'node:net';
import type { Plugin } from 'vite';
import { type Share, type ShareOptions, share } from './app/share.js';

export type BeamViteOptions = Omit<ShareOptions, 'target' | 'kind'>;

export default function beam(options: BeamViteOptions = {}): Plugin {
  let shared: Share | undefined;
  return {
    name: 'beam',
    apply: 'serve',
    config() {
      // Vite freezes its allowed hosts when the server is made, before the share's name is known: the share's domain goes in.
      const hosts = ['.localhost'];
      if (options.server) {
        try {
          hosts.push(`.${new URL(options.server).hostname}`);
        } catch {
          // share() says what is wrong with the URL when it starts.
        }
      }
      return { server: { allowedHosts: hosts } };
    },
    configureServer(server) {
      const logger = server.config.logger;
      let asked = false;
      let printed = false;
      const printLink = (): void => {
        if (!shared || !asked || printed) return;
        printed = true;
        logger.info(`  ➜  Beam:    ${shared.url}`);
        if (shared.lan) logger.info(`  ➜  Beam LAN: ${shared.lan}`);
      };
      // Vite prints its URLs once it listens; the Beam line follows them, now or once the share is registered.
      const printUrls = server.printUrls.bind(server);
      server.printUrls = () => {
        printUrls();
        asked = true;
        printLink();
      };
      const http = server.httpServer;
      if (!http) return;
      http.once('listening', () => {
        const port = (http.address() as AddressInfo).port;
        share({ ...options, target: port, kind: 'http' }).then(
          (s) => {
            shared = s;
            if (http.listening) printLink();
            else void s.close();
          },
          (err: Error & { code?: string }) => logger.error(`  ➜  Beam:    not shared: ${err.code ?? 'error'}: ${err.message}`),
        );
      });
      http.once('close', () => {
        void shared?.close();
      });
    },
  };
}
