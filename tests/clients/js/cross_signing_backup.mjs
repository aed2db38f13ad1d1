#!/usr/bin/env node
// Real-client interop check of Myelin's end-to-end-encryption endpoints using
// matrix-js-sdk with its Rust crypto stack (the crypto Element Web uses).
//
// Usage: node cross_signing_backup.mjs BASE_URL
//
// Steps:
//   a. register a fresh user, bootstrap cross-signing (UIA callback answers a
//      password UIA if the server asks for one), then reset the cross-signing
//      keys once, which must go through password UIA;
//   b. bootstrap secret storage with a new recovery key and a new key backup;
//   c. create an encrypted room, send a message, wait until its Megolm session
//      is in the server-side key backup;
//   d. log in a second device, check it sees the cross-signing keys and that the
//      first device is cross-signed; unlock the cross-signing secrets with the
//      recovery key and check the first device is then cross-signing verified;
//   e. on the second device, load the backup key from secret storage, restore
//      the key backup and decrypt the first device's message.
//
// Prints exactly one JSON object on stdout on success. Everything else goes to
// stderr. Exits non-zero with a message on any failure. All waits are bounded.
//
// Environment:
//   JSDK_VERBOSE=1   show the SDK's own (very chatty) logs on stderr
//   JSDK_HTTP_LOG=1  log every HTTP request/response on stderr (bodies truncated;
//                    JSDK_HTTP_LOG=full logs them whole)

import { format } from "node:util";
import { randomBytes } from "node:crypto";

const OVERALL_TIMEOUT_MS = 55_000;
const VERBOSE = process.env.JSDK_VERBOSE === "1";
const HTTP_LOG = process.env.JSDK_HTTP_LOG === "1" || process.env.JSDK_HTTP_LOG === "full";
const HTTP_LOG_FULL = process.env.JSDK_HTTP_LOG === "full";
const started = Date.now();

// ---------------------------------------------------------------------------
// Logging: stdout is reserved for the final JSON object. The SDK (and the Rust
// crypto's tracing bridge) log through `console`, which is looked up at call
// time, so redirecting/silencing `console` here covers them all.
// ---------------------------------------------------------------------------
function log(...args) {
    const t = ((Date.now() - started) / 1000).toFixed(2).padStart(6);
    process.stderr.write(`[${t}s] ${format(...args)}\n`);
}
for (const m of ["log", "info", "debug", "warn", "error", "trace"]) {
    console[m] = VERBOSE ? (...args) => process.stderr.write(`[sdk:${m}] ${format(...args)}\n`) : () => {};
}

// ---------------------------------------------------------------------------
// Failure handling
// ---------------------------------------------------------------------------
const httpHistory = []; // last exchanges, dumped on failure
const unexpectedHttp = []; // non-2xx answers that were not expected by the protocol flow

class CheckFailure extends Error {}
function check(cond, msg) {
    if (!cond) throw new CheckFailure(msg);
}

function fail(err) {
    let msg = err instanceof CheckFailure ? err.message : err?.stack || String(err);
    if (err?.cause) msg += `\n  caused by: ${err.cause?.code || ""} ${err.cause?.message || err.cause}`;
    process.stderr.write(`\nFAIL: ${msg}\n`);
    if (err?.httpStatus !== undefined) {
        process.stderr.write(`  (HTTP ${err.httpStatus}, data=${JSON.stringify(err.data)})\n`);
    }
    if (unexpectedHttp.length > 0) {
        process.stderr.write(`\nNon-2xx HTTP answers seen (${unexpectedHttp.length}):\n`);
        for (const e of unexpectedHttp.slice(-20)) process.stderr.write(`  ${e}\n`);
    }
    process.stderr.write(`\nLast HTTP exchanges:\n`);
    for (const e of httpHistory.slice(-15)) process.stderr.write(`  ${e}\n`);
    process.exit(1);
}

const overallTimer = setTimeout(() => {
    fail(new CheckFailure(`overall timeout of ${OVERALL_TIMEOUT_MS} ms exceeded (step: ${currentStep})`));
}, OVERALL_TIMEOUT_MS);

let currentStep = "init";
function step(name) {
    currentStep = name;
    log(`--- ${name}`);
}

async function waitFor(what, fn, { timeoutMs = 10_000, intervalMs = 200 } = {}) {
    const deadline = Date.now() + timeoutMs;
    let lastErr;
    while (Date.now() < deadline) {
        try {
            const v = await fn();
            if (v) return v;
        } catch (e) {
            lastErr = e;
        }
        await new Promise((r) => setTimeout(r, intervalMs));
    }
    throw new CheckFailure(
        `timed out after ${timeoutMs} ms waiting for ${what}` + (lastErr ? ` (last error: ${lastErr.message || lastErr})` : ""),
    );
}

function withTimeout(promise, ms, what) {
    let timer;
    return Promise.race([
        promise.finally(() => clearTimeout(timer)),
        new Promise((_, rej) => {
            timer = setTimeout(() => rej(new CheckFailure(`timed out after ${ms} ms: ${what}`)), ms);
        }),
    ]);
}

// ---------------------------------------------------------------------------
// HTTP: a fetch wrapper shared by the SDK clients and the script's own calls,
// recording every exchange (access tokens are not logged).
// ---------------------------------------------------------------------------
// (method, path regexp, status) triples that are part of normal protocol flows.
const EXPECTED_NON_2XX = [
    ["POST", /\/register$/, 401], // UIA: first register call
    ["POST", /\/keys\/device_signing\/upload$/, 401], // UIA when replacing cross-signing keys
    ["GET", /\/account_data\//, 404], // secret storage probing for unset account data
    ["GET", /\/room_keys\/version$/, 404], // no backup yet
];

function shortenUrl(url) {
    const u = new URL(url);
    u.searchParams.delete("access_token");
    return u.pathname + (u.search ? u.search : "");
}

function truncate(s, n = 600) {
    if (s === undefined || s === null) return "";
    s = String(s);
    if (HTTP_LOG_FULL) return s;
    return s.length > n ? s.slice(0, n) + `…(+${s.length - n})` : s;
}

// Request activity, to tell when the clients are quiet (see waitForQuiet).
const activity = { inflight: new Map(), nextId: 0, lastChange: Date.now() };

/** True for a /sync long-poll (has `since` and a non-zero timeout): it may legitimately stay open. */
function isLongPoll(url) {
    const u = new URL(url);
    return u.pathname.endsWith("/sync") && u.searchParams.has("since") && u.searchParams.get("timeout") !== "0";
}

/**
 * Wait until no HTTP request has started or finished for `quietMs`, and the only
 * requests still open are /sync long-polls. The server answers a long-poll at
 * once when it has news (e.g. device_lists.changed), and the SDK sends its
 * follow-up /keys/query right after, so a quiet spell means the client's view of
 * the server state is up to date.
 */
async function waitForQuiet(what, { quietMs = 500, timeoutMs = 10_000 } = {}) {
    await waitFor(
        what,
        () =>
            Date.now() - activity.lastChange >= quietMs &&
            [...activity.inflight.values()].every((url) => isLongPoll(url)),
        { timeoutMs, intervalMs: 50 },
    );
}

const realFetch = globalThis.fetch;
async function loggingFetch(input, init = {}) {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const method = (init.method || (typeof input === "object" && input.method) || "GET").toUpperCase();
    const path = shortenUrl(url);
    const reqBody = (typeof init.body === "string" ? init.body : init.body ? "<binary>" : "").replace(
        /("password"\s*:\s*)"[^"]*"/g,
        '$1"<redacted>"',
    );
    const reqId = activity.nextId++;
    activity.inflight.set(reqId, url);
    activity.lastChange = Date.now();
    let resp;
    try {
        resp = await realFetch(input, init);
    } finally {
        activity.inflight.delete(reqId);
        activity.lastChange = Date.now();
    }
    let respText = "";
    try {
        respText = await resp.clone().text();
    } catch {
        respText = "<unreadable>";
    }
    const line = `${method} ${path} -> ${resp.status} req=${truncate(reqBody, 300)} resp=${truncate(respText)}`;
    httpHistory.push(line);
    if (httpHistory.length > 200) httpHistory.shift();
    if (resp.status >= 300) {
        const pathOnly = new URL(url).pathname;
        const expected = EXPECTED_NON_2XX.some(([m, re, st]) => m === method && re.test(pathOnly) && st === resp.status);
        if (!expected) unexpectedHttp.push(line);
    }
    if (HTTP_LOG) log(`HTTP ${line}`);
    return resp;
}

async function api(baseUrl, method, path, { token, body } = {}) {
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const resp = await loggingFetch(baseUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await resp.text();
    let json;
    try {
        json = text ? JSON.parse(text) : {};
    } catch {
        throw new CheckFailure(`${method} ${path}: response is not JSON (status ${resp.status}): ${truncate(text)}`);
    }
    return { status: resp.status, json };
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------
async function main() {
    const baseUrl = (process.argv[2] || "").replace(/\/+$/, "");
    if (!/^https?:\/\//.test(baseUrl)) {
        throw new CheckFailure("usage: node cross_signing_backup.mjs BASE_URL (e.g. http://127.0.0.1:8008)");
    }

    // Import the SDK only now, after console has been redirected.
    const sdk = await import("matrix-js-sdk");
    const { decodeRecoveryKey, CrossSigningKey } = await import("matrix-js-sdk/lib/crypto-api/index.js");
    const { ClientEvent, SyncState } = sdk;
    const { logger: sdkLogger } = await import("matrix-js-sdk/lib/logger.js");
    sdkLogger.setLevel(VERBOSE ? "debug" : "silent", false);

    // ---- register ---------------------------------------------------------
    step("register user");
    const suffix = randomBytes(5).toString("hex");
    const username = `jsdk_xsb_${suffix}`;
    const password = `pw-${randomBytes(12).toString("hex")}`;
    let r = await api(baseUrl, "POST", "/_matrix/client/v3/register", {
        body: { username, password, initial_device_display_name: "jsdk device 1" },
    });
    check(r.status === 401, `register step 1: expected 401 with UIA session, got ${r.status} ${JSON.stringify(r.json)}`);
    check(typeof r.json.session === "string", `register step 1: 401 without "session": ${JSON.stringify(r.json)}`);
    r = await api(baseUrl, "POST", "/_matrix/client/v3/register", {
        body: {
            username,
            password,
            initial_device_display_name: "jsdk device 1",
            auth: { type: "m.login.dummy", session: r.json.session },
        },
    });
    check(r.status === 200, `register step 2: expected 200, got ${r.status} ${JSON.stringify(r.json)}`);
    const { user_id: userId, access_token: token1, device_id: device1 } = r.json;
    check(userId && token1 && device1, `register response lacks user_id/access_token/device_id: ${JSON.stringify(r.json)}`);
    log(`registered ${userId}, device ${device1}`);

    // ---- client 1 -------------------------------------------------------------
    const ssssKeys1 = new Map(); // keyId -> private key (filled by cacheSecretStorageKey)
    const client1 = sdk.createClient({
        baseUrl,
        userId,
        deviceId: device1,
        accessToken: token1,
        fetchFn: loggingFetch,
        cryptoCallbacks: {
            getSecretStorageKey: async ({ keys }) => {
                for (const keyId of Object.keys(keys)) {
                    if (ssssKeys1.has(keyId)) return [keyId, ssssKeys1.get(keyId)];
                }
                return null;
            },
            cacheSecretStorageKey: (keyId, _info, key) => ssssKeys1.set(keyId, key),
        },
    });
    const clients = [client1];

    try {
        step("client 1: initRustCrypto + sync");
        await withTimeout(client1.initRustCrypto({ useIndexedDB: false }), 10_000, "client1.initRustCrypto");
        const crypto1 = client1.getCrypto();
        check(crypto1, "client1.getCrypto() is undefined after initRustCrypto");
        await startAndWaitForSync(client1, "client 1");

        // ---- a. cross-signing --------------------------------------------------
        step("a. bootstrapCrossSigning");
        const uiaLog = [];
        const authUploadDeviceSigningKeys = async (makeRequest) => {
            try {
                const res = await makeRequest(null);
                uiaLog.push("none");
                return res;
            } catch (e) {
                if (e?.httpStatus !== 401 || !e?.data?.flows) throw e;
                const flows = e.data.flows.map((f) => (f.stages || []).join(","));
                check(
                    e.data.flows.some((f) => (f.stages || []).includes("m.login.password")),
                    `device_signing/upload UIA offers no m.login.password flow: ${JSON.stringify(e.data)}`,
                );
                check(typeof e.data.session === "string", `device_signing/upload 401 without session: ${JSON.stringify(e.data)}`);
                log(`device_signing/upload asked for UIA (flows: ${flows.join(" | ")}); answering with password`);
                const res = await makeRequest({
                    type: "m.login.password",
                    identifier: { type: "m.id.user", user: userId },
                    password,
                    session: e.data.session,
                });
                uiaLog.push("m.login.password");
                return res;
            }
        };
        await withTimeout(crypto1.bootstrapCrossSigning({ authUploadDeviceSigningKeys }), 10_000, "bootstrapCrossSigning");
        const status1 = await crypto1.getCrossSigningStatus();
        check(
            status1.publicKeysOnDevice && status1.privateKeysCachedLocally.masterKey,
            `cross-signing status after bootstrap: ${JSON.stringify(status1)}`,
        );
        // The local identity is refreshed from /keys/query (after /sync reports the
        // user in device_lists.changed), so wait for it rather than read it once.
        const firstMasterKey = await waitFor(
            "device 1 to see its uploaded master key (via device_lists.changed + /keys/query)",
            () => crypto1.getCrossSigningKeyId(CrossSigningKey.Master),
            { timeoutMs: 10_000 },
        );

        check(
            (await crypto1.getDeviceVerificationStatus(userId, device1))?.crossSigningVerified,
            "device 1 is not cross-signing verified on itself after bootstrapCrossSigning",
        );
        // Let device 1's crypto settle first: it re-queries its own keys after /sync
        // reports the device-signature upload in device_lists.changed. The Rust
        // crypto drops freshly reset private keys if a /keys/query answer carrying
        // the old public keys lands while the reset is waiting on UIA (log line
        // "cleared=DiffResult { master_differs: true, ... }"); that is an SDK race,
        // not a server fault, so avoid it.
        await waitForQuiet("device 1 to finish its post-bootstrap /sync + /keys/query round");

        // Reset once: replacing existing keys must go through password UIA.
        step("a'. reset cross-signing keys (password UIA)");
        await withTimeout(
            crypto1.bootstrapCrossSigning({ setupNewCrossSigning: true, authUploadDeviceSigningKeys }),
            10_000,
            "bootstrapCrossSigning(setupNewCrossSigning)",
        );
        check(
            uiaLog[1] === "m.login.password",
            `replacing cross-signing keys did not require password UIA (UIA log: ${JSON.stringify(uiaLog)})`,
        );
        const masterKey1 = await waitFor(
            "device 1 to see its new master key after the reset (via device_lists.changed + /keys/query)",
            async () => {
                const k = await crypto1.getCrossSigningKeyId(CrossSigningKey.Master);
                return k && k !== firstMasterKey ? k : null;
            },
            { timeoutMs: 10_000 },
        );
        log(`cross-signing master key ${masterKey1} (UIA: ${uiaLog.join(", ")})`);

        // ---- b. secret storage + key backup ---------------------------------------
        step("b. bootstrapSecretStorage (new recovery key, new key backup)");
        let recoveryKey;
        await withTimeout(
            crypto1.bootstrapSecretStorage({
                createSecretStorageKey: async () => {
                    const k = await crypto1.createRecoveryKeyFromPassphrase();
                    recoveryKey = k.encodedPrivateKey;
                    return k;
                },
                setupNewSecretStorage: true,
                setupNewKeyBackup: true,
            }),
            15_000,
            "bootstrapSecretStorage",
        );
        check(recoveryKey, "no recovery key was generated");
        check(await crypto1.isSecretStorageReady(), "isSecretStorageReady() is false after bootstrapSecretStorage");
        const crossSigningReady = await crypto1.isCrossSigningReady();
        check(crossSigningReady, "isCrossSigningReady() is false on device 1");
        const backupVersion = await waitFor("an active key backup on device 1", () => crypto1.getActiveSessionBackupVersion(), {
            timeoutMs: 5_000,
        });
        log(`secret storage ready, key backup version ${backupVersion}`);

        // ---- c. encrypted room + message + backup upload --------------------------
        step("c. encrypted room, message, backup upload");
        const { room_id: roomId } = await client1.createRoom({
            name: `jsdk e2ee ${suffix}`,
            initial_state: [
                { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
            ],
        });
        check(roomId, "createRoom returned no room_id");
        await waitFor(
            "the new room to be joined and encrypted on device 1",
            async () => client1.getRoom(roomId)?.getMyMembership() === "join" && (await crypto1.isEncryptionEnabledInRoom(roomId)),
            { timeoutMs: 10_000 },
        );
        const body = `backed-up secret ${suffix}`;
        const { event_id: eventId } = await withTimeout(client1.sendTextMessage(roomId, body), 10_000, "sendTextMessage");
        check(eventId, "sendTextMessage returned no event_id");
        log(`sent ${eventId} in ${roomId}`);

        // The SDK uploads room keys to the backup from a background loop (random
        // delay of up to 10 s); poll the server until the key shows up.
        const backupInfo = await waitFor(
            "the room key to be uploaded to the backup (GET /room_keys/version count > 0)",
            async () => {
                const v = await api(baseUrl, "GET", "/_matrix/client/v3/room_keys/version", { token: token1 });
                check(v.status === 200, `GET /room_keys/version: ${v.status} ${JSON.stringify(v.json)}`);
                return v.json.count > 0 ? v.json : null;
            },
            { timeoutMs: 20_000, intervalMs: 500 },
        );
        check(
            backupInfo.version === backupVersion,
            `server's current backup version ${backupInfo.version} differs from the client's ${backupVersion}`,
        );
        check(typeof backupInfo.etag === "string", `GET /room_keys/version lacks a string etag: ${JSON.stringify(backupInfo)}`);
        log(`backup ${backupInfo.version} holds ${backupInfo.count} key(s)`);

        // Stop device 1 so that the second device can only get the key from the backup.
        client1.stopClient();

        // ---- d. second device --------------------------------------------------
        step("d. second device: login, cross-signing visibility and trust");
        r = await api(baseUrl, "POST", "/_matrix/client/v3/login", {
            body: {
                type: "m.login.password",
                identifier: { type: "m.id.user", user: username },
                password,
                initial_device_display_name: "jsdk device 2",
            },
        });
        check(r.status === 200, `login: expected 200, got ${r.status} ${JSON.stringify(r.json)}`);
        const { access_token: token2, device_id: device2 } = r.json;
        check(r.json.user_id === userId, `login returned user_id ${r.json.user_id}, expected ${userId}`);
        check(token2 && device2 && device2 !== device1, `login response: ${JSON.stringify(r.json)}`);

        const recoveryKeyBytes = decodeRecoveryKey(recoveryKey);
        const client2 = sdk.createClient({
            baseUrl,
            userId,
            deviceId: device2,
            accessToken: token2,
            fetchFn: loggingFetch,
            cryptoCallbacks: {
                // The "user" types in the recovery key: answer for the default key.
                getSecretStorageKey: async ({ keys }) => {
                    const defaultKeyId = await client2.secretStorage.getDefaultKeyId();
                    if (defaultKeyId && keys[defaultKeyId]) return [defaultKeyId, recoveryKeyBytes];
                    return null;
                },
            },
        });
        clients.push(client2);
        await withTimeout(client2.initRustCrypto({ useIndexedDB: false }), 10_000, "client2.initRustCrypto");
        const crypto2 = client2.getCrypto();
        await startAndWaitForSync(client2, "client 2");

        const hasKeys = await crypto2.userHasCrossSigningKeys(userId, true);
        check(hasKeys, "device 2 does not see cross-signing keys for the user (/keys/query lacks master/self_signing keys?)");
        const devices = await crypto2.getUserDeviceInfo([userId], true);
        const seen = [...(devices.get(userId)?.keys() ?? [])];
        check(seen.includes(device1), `device 2 does not see device 1 (${device1}) in /keys/query; saw ${JSON.stringify(seen)}`);
        const before = await crypto2.getDeviceVerificationStatus(userId, device1);
        check(before, "getDeviceVerificationStatus(device 1) returned null on device 2");
        check(
            before.signedByOwner,
            "device 1 is not signed by the user's self-signing key as seen from device 2 (signature from /keys/signatures/upload missing in /keys/query?)",
        );
        log(`device 2 sees device 1 signed by owner; crossSigningVerified before recovery: ${before.crossSigningVerified}`);

        // Unlock the cross-signing private keys from secret storage with the recovery
        // key: device 2 becomes trusted and now trusts our identity.
        await withTimeout(crypto2.bootstrapCrossSigning({}), 10_000, "device 2 bootstrapCrossSigning from secret storage");
        const masterKey2 = await crypto2.getCrossSigningKeyId(CrossSigningKey.Master);
        check(masterKey2 === masterKey1, `device 2 master key ${masterKey2} differs from device 1's ${masterKey1}`);
        check(await crypto2.isCrossSigningReady(), "isCrossSigningReady() is false on device 2 after unlocking with the recovery key");
        const after = await crypto2.getDeviceVerificationStatus(userId, device1);
        check(after?.crossSigningVerified, `device 1 not cross-signing verified on device 2: ${JSON.stringify(after)}`);
        // Device 2 signed its own device keys with the self-signing key and uploaded
        // the signature (/keys/signatures/upload): check the server returns it in
        // /keys/query, then that device 2's crypto picks it up (it re-queries its own
        // keys when /sync lists the user in device_lists.changed).
        const q = await api(baseUrl, "POST", "/_matrix/client/v3/keys/query", {
            token: token2,
            body: { device_keys: { [userId]: [] } },
        });
        check(q.status === 200, `POST /keys/query: ${q.status} ${JSON.stringify(q.json)}`);
        const selfSigningKeyId = Object.keys(q.json.self_signing_keys?.[userId]?.keys ?? {})[0];
        check(selfSigningKeyId, `/keys/query lacks self_signing_keys for ${userId}: ${JSON.stringify(q.json)}`);
        check(
            q.json.device_keys?.[userId]?.[device2]?.signatures?.[userId]?.[selfSigningKeyId],
            `/keys/query: device 2's keys lack the self-signing signature it uploaded: ${JSON.stringify(q.json.device_keys?.[userId]?.[device2])}`,
        );
        const own2 = await waitFor(
            "device 2 to see its own device as cross-signed (needs device_lists.changed in /sync after /keys/signatures/upload)",
            async () => {
                const st = await crypto2.getDeviceVerificationStatus(userId, device2);
                return st?.crossSigningVerified ? st : null;
            },
            { timeoutMs: 10_000, intervalMs: 250 },
        );

        // ---- e. restore backup + decrypt -------------------------------------------
        step("e. restore key backup on device 2 and decrypt");
        const room2 = await waitFor("the room on device 2", () => client2.getRoom(roomId), { timeoutMs: 10_000 });
        const event2 = await waitFor(
            "the message event in device 2's timeline",
            async () => {
                const found = room2.getLiveTimeline().getEvents().find((e) => e.getId() === eventId);
                if (found) return found;
                if (room2.getLiveTimeline().getPaginationToken("b")) await client2.scrollback(room2, 30);
                return null;
            },
            { timeoutMs: 10_000, intervalMs: 300 },
        );
        check(event2.isEncrypted(), "the message is not encrypted on the wire");
        // Before the backup is restored, device 2 has no key for the session: the
        // event must end up as a decryption failure (else the test proves nothing).
        await waitFor(
            "device 2's first decryption attempt to fail (no room key yet)",
            () => event2.isDecryptionFailure() || event2.getClearContent()?.body !== undefined,
            { timeoutMs: 5_000, intervalMs: 100 },
        );
        const decryptableBeforeRestore = !event2.isDecryptionFailure();
        check(!decryptableBeforeRestore, "device 2 could decrypt the message before restoring the backup (test would prove nothing)");

        await withTimeout(
            crypto2.loadSessionBackupPrivateKeyFromSecretStorage(),
            10_000,
            "loadSessionBackupPrivateKeyFromSecretStorage",
        );
        const check2 = await withTimeout(crypto2.checkKeyBackupAndEnable(), 10_000, "checkKeyBackupAndEnable");
        check(check2?.backupInfo?.version === backupVersion, `device 2 sees backup ${check2?.backupInfo?.version}, expected ${backupVersion}`);
        check(check2.trustInfo.trusted, `device 2 does not trust backup ${backupVersion}: ${JSON.stringify(check2.trustInfo)}`);
        check(check2.trustInfo.matchesDecryptionKey, "backup decryption key from secret storage does not match the backup's public key");
        const restored = await withTimeout(crypto2.restoreKeyBackup(), 15_000, "restoreKeyBackup");
        log(`restoreKeyBackup: total=${restored.total} imported=${restored.imported}`);
        check(restored.imported > 0, `restoreKeyBackup imported no keys: ${JSON.stringify(restored)}`);

        const decryptedBody = await waitFor(
            "the message to decrypt on device 2",
            async () => {
                if (event2.isDecryptionFailure()) {
                    await client2.decryptEventIfNeeded(event2, { isRetry: true });
                }
                return event2.getClearContent()?.body;
            },
            { timeoutMs: 10_000, intervalMs: 300 },
        );
        check(decryptedBody === body, `decrypted body ${JSON.stringify(decryptedBody)} != sent ${JSON.stringify(body)}`);

        const result = {
            user_id: userId,
            cross_signing_ready: crossSigningReady,
            cross_signing_uia: uiaLog,
            first_device_signed_by_owner_seen_by_second: before.signedByOwner,
            first_device_verified_by_second: after.crossSigningVerified,
            second_device_verified_after_recovery_key: own2.crossSigningVerified,
            backup_version: backupVersion,
            backup_count: backupInfo.count,
            backup_trusted_on_second: check2.trustInfo.trusted,
            restored_total: restored.total,
            restored_keys: restored.imported,
            decryptable_before_restore: decryptableBeforeRestore,
            decrypted_body: decryptedBody,
            unexpected_http_errors: unexpectedHttp.length,
            elapsed_ms: Date.now() - started,
        };
        if (unexpectedHttp.length > 0) {
            log(`note: ${unexpectedHttp.length} unexpected non-2xx HTTP answer(s):`);
            for (const e of unexpectedHttp) log(`  ${e}`);
        }
        return result;
    } finally {
        for (const c of clients) {
            try {
                c.stopClient();
            } catch {}
        }
    }

    async function startAndWaitForSync(client, name) {
        const prepared = new Promise((resolve, reject) => {
            const onSync = (state, _prev, data) => {
                if (state === SyncState.Prepared || state === SyncState.Syncing) {
                    client.off(ClientEvent.Sync, onSync);
                    resolve();
                } else if (state === SyncState.Error) {
                    client.off(ClientEvent.Sync, onSync);
                    reject(new CheckFailure(`${name}: sync error: ${data?.error?.message || JSON.stringify(data)}`));
                }
            };
            client.on(ClientEvent.Sync, onSync);
        });
        await client.startClient({ initialSyncLimit: 30 });
        await withTimeout(prepared, 10_000, `${name}: initial sync`);
        log(`${name}: initial sync done`);
    }
}

try {
    const result = await main();
    clearTimeout(overallTimer);
    process.stdout.write(JSON.stringify(result) + "\n");
    log(`PASS in ${Date.now() - started} ms`);
    process.exit(0);
} catch (e) {
    fail(e);
}
