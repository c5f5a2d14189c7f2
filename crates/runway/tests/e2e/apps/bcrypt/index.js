// An app with a native dependency: bcrypt is C++ that node-gyp compiles at `npm ci`
// (apprunner.yaml asks for that even where a prebuilt binary could be downloaded).
const http = require("http");
const bcrypt = require("bcrypt");
const hash = bcrypt.hashSync("runway", 4);
http
  .createServer((req, res) => {
    const ok = bcrypt.compareSync("runway", hash) && !bcrypt.compareSync("other", hash);
    res.end(`bcrypt ${require("bcrypt/package.json").version} on Node.js ${process.versions.node}: ${ok ? "ok" : "wrong"}\n`);
  })
  .listen(process.env.PORT || 8080, "0.0.0.0");
