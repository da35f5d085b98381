// A raw WebSocket broadcast server on Node's `ws` (npm), for the fan-out benchmark: every text
// message one client sends goes to every client. Listens on 127.0.0.1 only.
//   node ws-broadcast.mjs PORT
import { WebSocketServer } from "ws";

const port = Number(process.argv[2]);
const wss = new WebSocketServer({ host: "127.0.0.1", port, path: "/ws" });
wss.on("connection", (socket) => {
  socket.on("message", (data, isBinary) => {
    for (const client of wss.clients) {
      if (client.readyState === 1) client.send(data, { binary: isBinary });
    }
  });
});
wss.on("listening", () => console.log(`listening on http://127.0.0.1:${port}`));
