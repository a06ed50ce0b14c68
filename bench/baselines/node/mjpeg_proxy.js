// Baseline: an MJPEG proxy from npm ("mjpeg-proxy" or "node-mjpeg-proxy") relaying one
// camera to every viewer, on Node's own http server, as their READMEs show (without
// express, which adds nothing to the relay path).
//   node mjpeg_proxy.js --pkg mjpeg-proxy --port 8080 --camera http://127.0.0.1:81/stream
"use strict";
const http = require("http");

function arg(name) {
  const i = process.argv.indexOf("--" + name);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error("missing --" + name);
  return process.argv[i + 1];
}

const pkg = arg("pkg");
const mod = require(pkg);
const MjpegProxy = pkg === "mjpeg-proxy" ? mod.MjpegProxy : mod;
const proxy = new MjpegProxy(arg("camera"));
http.createServer((req, res) => proxy.proxyRequest(req, res)).listen(Number(arg("port")), "127.0.0.1");
