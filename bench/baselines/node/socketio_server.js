// Baseline: a Node socket.io 4 server doing what camserver's Socket.IO path does. It
// pulls one camera's MJPEG stream (parts with Content-Length, as an ESP32 sends them),
// and emits each frame once to the room "stream:<name>" as the event "frame"
// {name, seq, ts, token, data: <binary JPEG>}; clients join with "join_stream" {name}
// and get {ok: true} back. No auth, no slow-viewer handling.
//   node socketio_server.js --port 8080 --camera http://127.0.0.1:81/stream --name cam
"use strict";
const http = require("http");
const { Server } = require("socket.io");

function arg(name) {
  const i = process.argv.indexOf("--" + name);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error("missing --" + name);
  return process.argv[i + 1];
}

const name = arg("name");
const room = "stream:" + name;
const server = http.createServer();
const io = new Server(server, { maxHttpBufferSize: 64 * 1024, perMessageDeflate: false });
io.on("connection", (socket) => {
  socket.on("join_stream", (data, ack) => {
    if (!data || data.name !== name) return ack && ack({ ok: false, error: "no such stream" });
    socket.join(room);
    if (ack) ack({ ok: true });
  });
});

let seq = 0;
function pull(url) {
  http.get(url, (res) => {
    // Each part: "--boundary\r\nContent-Type: ...\r\nContent-Length: N\r\n...\r\n\r\n" + N bytes.
    let buf = Buffer.alloc(0);
    let need = -1;
    res.on("data", (chunk) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      for (;;) {
        if (need < 0) {
          const end = buf.indexOf("\r\n\r\n");
          if (end < 0) return;
          const m = /content-length:\s*(\d+)/i.exec(buf.subarray(0, end).toString("latin1"));
          buf = buf.subarray(end + 4);
          if (!m) continue;
          need = Number(m[1]);
        }
        if (buf.length < need) return;
        const data = Buffer.from(buf.subarray(0, need));
        buf = buf.subarray(need);
        need = -1;
        seq += 1;
        io.to(room).emit("frame", { name, seq, ts: Date.now() / 1000, token: 0, data });
      }
    });
    res.on("end", () => setTimeout(() => pull(url), 500));
  }).on("error", () => setTimeout(() => pull(url), 500));
}

server.listen(Number(arg("port")), "127.0.0.1", () => pull(arg("camera")));
