// A Socket.IO viewer as every front end writes one: io(url, {auth: {token}}).
// Usage: node socketio_viewer.js URL TOKEN STREAM FRAMES
// Prints one JSON line: {"connected": true, "frames": N, "sizes": [...]} or
// {"connected": false, "error": "<connect_error message>"}; exits 0 either way.
const { io } = require("socket.io-client");

const [url, token, stream, wanted] = process.argv.slice(2);
const socket = io(url, { auth: { token }, reconnection: false, timeout: 10000 });
const sizes = [];
const done = (result) => {
  process.stdout.write(JSON.stringify(result) + "\n");
  socket.close();
  process.exit(0);
};
setTimeout(() => done({ connected: socket.connected, frames: sizes.length, timeout: true }), 20000);
socket.on("connect_error", (err) => done({ connected: false, error: err.message }));
socket.on("connect", () => {
  socket.emit("join_stream", { name: stream }, (ack) => {
    if (!ack.ok) done({ connected: true, joined: false, error: ack.error });
  });
});
socket.on("frame", (frame) => {
  sizes.push(frame.data.length);
  if (sizes.length >= Number(wanted)) {
    done({ connected: true, transport: socket.io.engine.transport.name, frames: sizes.length, sizes });
  }
});
