// An independent Matrix client for the tests: matrix-js-sdk with its Rust crypto, set up
// as Element does since 2026 (own cross-signing, "exclude insecure devices" mode). libhub
// never uses it. Driven by pytest (tests/e2ekit.py): one JSON command per stdin line, one
// JSON answer per stdout line ({"ok": true, ...} or {"ok": false, "error": "..."}).

// Node 20 lacks Promise.withResolvers, which the Rust crypto bindings use.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    return { promise, resolve, reject };
  };
}

import "fake-indexeddb/auto";
import readline from "node:readline";
import * as sdk from "matrix-js-sdk";
import { OnlySignedDevicesIsolationMode } from "matrix-js-sdk/lib/crypto-api/index.js";
import { logger } from "matrix-js-sdk/lib/logger.js";

logger.setLevel("error");

let client = null;
let password = null;

// The Rust crypto logs with console.*: keep stdout for answers, marked with "@@".
for (const level of ["log", "info", "debug", "warn", "trace"]) console[level] = console.error;

function reply(obj) {
  process.stdout.write("@@" + JSON.stringify(obj) + "\n");
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function login({ homeserver, user_id, password: pw }) {
  password = pw;
  const bare = sdk.createClient({ baseUrl: homeserver });
  const session = await bare.loginRequest({
    type: "m.login.password",
    identifier: { type: "m.id.user", user: user_id },
    password: pw,
    initial_device_display_name: "js-sdk test client",
  });
  client = sdk.createClient({
    baseUrl: homeserver,
    userId: session.user_id,
    accessToken: session.access_token,
    deviceId: session.device_id,
  });
  await client.initRustCrypto({ useIndexedDB: false });
  const crypto = client.getCrypto();
  crypto.setDeviceIsolationMode(new OnlySignedDevicesIsolationMode());
  await crypto.bootstrapCrossSigning({
    setupNewCrossSigning: true,
    authUploadDeviceSigningKeys: async (makeRequest) => {
      await makeRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: session.user_id },
        password,
      });
    },
  });
  const prepared = new Promise((resolve) => {
    client.on(sdk.ClientEvent.Sync, (state) => { if (state === "PREPARED") resolve(); });
  });
  await client.startClient({ initialSyncLimit: 50 });
  await prepared;
  return { device_id: session.device_id, user_id: session.user_id };
}

async function createRoom({ invite = [], is_direct = false, name = "" }) {
  const body = {
    preset: is_direct ? "trusted_private_chat" : "private_chat",
    invite,
    is_direct,
    name,
    initial_state: [
      { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
    ],
  };
  const { room_id } = await client.createRoom(body);
  await waitFor(() => client.getRoom(room_id), 30000, `room ${room_id} in sync`);
  return { room_id };
}

async function waitFor(check, timeout, what) {
  const until = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

async function join({ room }) {
  const r = await client.joinRoom(room);
  await waitFor(() => client.getRoom(r.roomId), 30000, `room ${r.roomId} in sync`);
  return { room_id: r.roomId };
}

async function send({ room, body, content }) {
  const c = content || { msgtype: "m.text", body };
  const { event_id } = await client.sendEvent(room, "m.room.message", c);
  return { event_id };
}

async function timeline(roomId) {
  const room = client.getRoom(roomId);
  if (!room) return [];
  const out = [];
  for (const ev of room.getLiveTimeline().getEvents()) {
    if (ev.isEncrypted()) await client.decryptEventIfNeeded(ev);
    out.push({
      event_id: ev.getId(),
      type: ev.getType(),
      wire_type: ev.getWireType(),
      sender: ev.getSender(),
      content: ev.getContent(),
      encrypted: ev.isEncrypted(),
      decryption_failure: ev.isDecryptionFailure() ? String(ev.decryptionFailureReason) : null,
    });
  }
  return out;
}

async function messages({ room }) {
  return { events: await timeline(room) };
}

async function waitMessage({ room, sender, contains = "", timeout = 60000 }) {
  const found = await waitFor(async () => {
    const events = await timeline(room);
    return events.find(
      (e) => e.type === "m.room.message" && (!sender || e.sender === sender)
        && String(e.content.body || "").includes(contains),
    );
  }, timeout, `a message from ${sender} containing ${JSON.stringify(contains)}`);
  return { event: found };
}

async function deviceStatus({ user_id, device_id }) {
  const crypto = client.getCrypto();
  let status = null;
  for (let i = 0; i < 50 && !status; i++) {
    const devices = await crypto.getUserDeviceInfo([user_id], true);
    if (devices.get(user_id)?.get(device_id)) {
      status = await crypto.getDeviceVerificationStatus(user_id, device_id);
    } else {
      await sleep(200);
    }
  }
  if (!status) return { known: false };
  return {
    known: true,
    signedByOwner: status.signedByOwner,
    crossSigningVerified: status.crossSigningVerified,
    isVerified: status.isVerified(),
  };
}

// Decrypt events read from the homeserver (the /messages API), not from this client's own
// timeline, which a burst of messages can leave with gaps.
async function decryptEvents({ room, events }) {
  const out = [];
  for (const raw of events) {
    const ev = new sdk.MatrixEvent({ ...raw, room_id: room });
    if (ev.isEncrypted()) await client.decryptEventIfNeeded(ev);
    out.push({
      event_id: ev.getId(),
      type: ev.getType(),
      sender: ev.getSender(),
      content: ev.getContent(),
      encrypted: ev.isEncrypted(),
      decryption_failure: ev.isDecryptionFailure() ? String(ev.decryptionFailureReason) : null,
    });
  }
  return { events: out };
}

// Whether this device answers other devices' m.room_key_request with the key (the Rust
// crypto does for devices it shared the session with): off, a key withheld stays withheld.
async function keyForwarding({ enabled }) {
  client.getCrypto().olmMachine.roomKeyForwardingEnabled = Boolean(enabled);
  return {};
}

const commands = {
  login, create_room: createRoom, join, send, messages, wait_message: waitMessage,
  device_status: deviceStatus, key_forwarding: keyForwarding,
  decrypt_events: decryptEvents,
};

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  let cmd;
  try {
    cmd = JSON.parse(line);
    if (cmd.cmd === "stop") {
      if (client) client.stopClient();
      reply({ ok: true });
      break;
    }
    const handler = commands[cmd.cmd];
    if (!handler) throw new Error(`unknown command ${cmd.cmd}`);
    reply({ ok: true, ...(await handler(cmd)) });
  } catch (e) {
    reply({ ok: false, error: String(e && e.stack ? e.stack : e) });
  }
}
process.exit(0);
