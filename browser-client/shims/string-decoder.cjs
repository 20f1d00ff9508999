// string_decoder for the browser bundle: readable-stream asks for it only when a
// stream has an encoding (setEncoding), which Beam's streams never do. The
// package weighs 3.6 KiB; TextDecoder in streaming mode does the same work.
class StringDecoder {
  constructor(encoding) {
    this.decoder = new TextDecoder(!encoding || /^utf-?8$/i.test(encoding) ? 'utf-8' : encoding);
  }
  write(chunk) {
    return this.decoder.decode(chunk, { stream: true });
  }
  end(chunk) {
    return (chunk ? this.write(chunk) : '') + this.decoder.decode();
  }
}
exports.StringDecoder = StringDecoder;
