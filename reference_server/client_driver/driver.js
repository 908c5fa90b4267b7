// The client driver contract (spec/CLIENT-DRIVER.md) for asp-client.js, shared by the Node and the
// Chromium drivers: stdin lines in, stdout records out; the transport of the lines is theirs.
//
//   const driver = drive(client, (record) => writeLine(JSON.stringify(record)));
//   client.connect(); ... driver.input(line) for each stdin line ...; await driver.end() at EOF.

const SHOWN = { open: "open", reconnecting: "reconnecting", connecting: "reconnecting", idle: "closed", closed: "closed" };

export function drive(client, emit) {
  const texts = new Map(); // run_id -> the text shown so far
  let shown = null;
  client.on("state", ({ state, code }) => {
    const next = SHOWN[state];
    if (!next || next === shown || (state === "connecting" && shown === null)) return;
    shown = next;
    emit(next === "open" || code === undefined ? { event: "state", state: next } : { event: "state", state: next, code });
  });
  client.on("run_started", (event) => texts.set(event.run_id, ""));
  client.on("text_delta", (event) => texts.set(event.run_id, (texts.get(event.run_id) ?? "") + event.delta));
  client.on("complete", (event) => {
    emit({ event: "run", run_id: event.run_id, text: texts.get(event.run_id) ?? "", finish_reason: event.finish_reason });
    texts.delete(event.run_id);
  });
  client.on("error", (event) => emit({ event: "error", code: event.code }));
  return {
    input(line) {
      const command = JSON.parse(line);
      if (typeof command.send === "string") client.sendMessage(command.send);
      else if (command.cancel === true) client.cancel();
    },
    end() {
      client.close();
      return new Promise((resolve) => setTimeout(resolve, 200)); // the close frame leaves
    },
  };
}
