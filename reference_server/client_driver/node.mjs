// The Node driver of asp-client.js (spec/CLIENT-DRIVER.md). Node 20 needs --experimental-websocket.
import { createInterface } from "node:readline";
import { AspClient } from "./asp-client.js";
import { drive } from "./driver.js";

const client = new AspClient({ url: process.env.ASP_URL, token: process.env.ASP_TOKEN });
const driver = drive(client, (record) => process.stdout.write(JSON.stringify(record) + "\n"));
client.connect();
const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => { if (line.trim()) driver.input(line); });
lines.on("close", async () => {
  await driver.end();
  process.exit(0);
});
