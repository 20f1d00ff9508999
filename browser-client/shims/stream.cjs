// node:stream for the browser bundle: Duplex only (all shared/mux.ts needs),
// from readable-stream 3. Version 4 and its other classes weigh three times more.
exports.Duplex = require('readable-stream-3/lib/_stream_duplex.js');
