#!/usr/bin/env node
// The desktop app's figures: time from launch to interactive, idle memory of all of its
// processes (the app and WebKit's web and network processes), and the .deb's size — beside
// the terminal chat (`hubbub chat`, the same core without a webview) as the baseline.
//
//   node scripts/bench-app.mjs --app target/release/hubbub-app --cli target/release/hubbub \
//        [--deb path/to/hubbub.deb] [--runs 5] [--idle 5]
//
// Each launch runs under Xvfb through tauri-driver + WebKitWebDriver with a fresh profile
// (a first run: new database, embedded hub) and then again on that profile (a warm start).
// "Interactive" means the chat is shown with the composer and the status reads connected.
// Memory is read from /proc after `--idle` seconds: RSS summed over the process tree, and
// PSS (shared pages divided among their users, so the sum does not count libraries twice).
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, readFileSync, readdirSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir, homedir } from "node:os";
import { join } from "node:path";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith("--") ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []),
);
const app = args.app;
const cli = args.cli;
const runs = Number(args.runs ?? 5);
const idle = Number(args.idle ?? 5);
if (!app || !existsSync(app)) throw new Error("--app PATH (a built hubbub-app) is required");

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const freePort = () =>
  new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
const waitPort = async (port) => {
  for (let i = 0; i < 200; i++) {
    try {
      await fetch(`http://127.0.0.1:${port}/status`);
      return;
    } catch {
      await sleep(50);
    }
  }
  throw new Error(`nothing listens on ${port}`);
};

function which(name) {
  for (const dir of [...(process.env.PATH ?? "").split(":"), join(homedir(), ".cargo/bin")]) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  throw new Error(`${name} not found`);
}

// /proc: children, and memory per process.
function processes() {
  const out = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const cmd = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0").filter(Boolean);
      out.push({ pid: Number(name), ppid: Number(rest[1]), cmd });
    } catch {}
  }
  return out;
}
function tree(root) {
  const all = processes();
  const ids = new Set([root]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const p of all) if (!ids.has(p.pid) && ids.has(p.ppid)) (ids.add(p.pid), (grew = true));
  }
  return all.filter((p) => ids.has(p.pid));
}
function memory(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
    const kb = (key) => Number((text.match(new RegExp(`^${key}:\\s+(\\d+)`, "m")) ?? [0, 0])[1]);
    return { rss: kb("Rss"), pss: kb("Pss") };
  } catch {
    return { rss: 0, pss: 0 };
  }
}
// Where the PSS of a process tree goes, by what is mapped (from /proc/PID/smaps): WebKit's
// libraries, the GL stack WebKit loads (Mesa and its LLVM under Xvfb), the speech synthesis
// libraries WebKit links (flite), ICU, other system libraries, the app's binary, and
// anonymous memory (heaps, stacks, caches: what WebKit's cache model and memory-pressure
// settings act on).
const CATEGORIES = [
  ["WebKit and JavaScriptCore libraries", /libwebkit2gtk|libjavascriptcoregtk/],
  ["Mesa GL stack and its LLVM (software rendering here)", /libLLVM|\/dri\/|libGL|libEGL|libgallium|libglapi|libgbm|libdrm/],
  ["flite speech synthesis (linked by WebKit)", /libflite/],
  ["ICU", /libicu/],
  ["GTK, GLib, GStreamer and other system libraries", /\.so/],
];
function breakdown(procs, appPath) {
  const out = {};
  for (const p of procs) {
    let text = "";
    try {
      text = readFileSync(`/proc/${p.pid}/smaps`, "utf8");
    } catch {
      continue;
    }
    let name = "";
    for (const line of text.split("\n")) {
      const head = line.match(/^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/);
      if (head) {
        name = head[1];
        continue;
      }
      const pss = line.match(/^Pss:\s+(\d+)/);
      if (!pss) continue;
      let kind;
      if (name === appPath) kind = "the app's binary";
      else if (name === "" || name.startsWith("[")) kind = "anonymous memory (heaps, stacks, JS and WebKit caches)";
      else kind = (CATEGORIES.find(([, re]) => re.test(name)) ?? ["other files (fonts, locale, shared memory)"])[0];
      out[kind] = (out[kind] ?? 0) + Number(pss[1]);
    }
  }
  return out;
}

const sum = (procs) =>
  procs.map((p) => memory(p.pid)).reduce((a, m) => ({ rss: a.rss + m.rss, pss: a.pss + m.pss }), { rss: 0, pss: 0 });

async function webdriver(port, method, path, body) {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const j = await r.json();
  if (j.value && j.value.error) throw new Error(`${path}: ${JSON.stringify(j.value)}`);
  return j.value;
}

async function launch(port, profile) {
  const started = performance.now();
  const session = await webdriver(port, "POST", "/session", {
    capabilities: { alwaysMatch: { "tauri:options": { application: app, args: ["--profile", profile] } } },
  });
  const base = `/session/${session.sessionId}`;
  for (;;) {
    const ready = await webdriver(port, "POST", `${base}/execute/sync`, {
      script:
        "const s = document.querySelector('#status'); return !!(s && s.dataset.state === 'connected' && document.querySelector('#composer'));",
      args: [],
    });
    if (ready) break;
    if (performance.now() - started > 60_000) throw new Error("not interactive after 60 s");
    await sleep(10);
  }
  const interactiveMs = performance.now() - started;
  await sleep(idle * 1000);
  const appProc = processes().find((p) => p.cmd[0] === app && p.cmd.includes(profile));
  const procs = appProc ? tree(appProc.pid) : [];
  const mem = sum(procs);
  const kinds = procs.map((p) => p.cmd[0].split("/").pop());
  // PSS of each process: the app's own and WebKit's web and network processes apart.
  const byKind = {};
  for (const p of procs) {
    const kind = p.pid === appProc.pid ? "app" : p.cmd[0].split("/").pop();
    byKind[kind] = (byKind[kind] ?? 0) + memory(p.pid).pss;
  }
  const byMapping = breakdown(procs, app);
  await webdriver(port, "DELETE", base);
  await sleep(300);
  return { interactiveMs, ...mem, processes: kinds, byKind, byMapping };
}

async function terminalBaseline() {
  if (!cli || !existsSync(cli)) return null;
  const dir = mkdtempSync(join(tmpdir(), "hubbub-bench-cli-"));
  const child = spawn(cli, ["chat", "--name", "bench", "--db", join(dir, "t.sqlite3")], {
    stdio: ["pipe", "ignore", "ignore"],
  });
  await sleep(1000 + idle * 1000);
  const mem = sum(tree(child.pid));
  // End of input ends the terminal chat (as Ctrl-D does); SIGKILL if it lingers.
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.stdin.end();
  if ((await Promise.race([exited.then(() => true), sleep(5000).then(() => false)])) === false) {
    child.kill("SIGKILL");
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
  return mem;
}

const xvfbBin = which("Xvfb");
let display = 0;
for (let n = 0; n < 100; n++) {
  const d = 300 + ((process.pid + n * 11) % 600);
  if (!existsSync(`/tmp/.X${d}-lock`)) {
    display = d;
    break;
  }
}
const xvfb = spawn(xvfbBin, [`:${display}`, "-screen", "0", "1280x800x24", "-nolisten", "tcp"], { stdio: "ignore" });
for (let i = 0; i < 100 && !existsSync(`/tmp/.X11-unix/X${display}`); i++) await sleep(50);
const port = await freePort();
const nativePort = await freePort();
const driver = spawn(
  which("tauri-driver"),
  ["--port", String(port), "--native-port", String(nativePort), "--native-driver", which("WebKitWebDriver")],
  { stdio: "ignore", env: { ...process.env, DISPLAY: `:${display}`, HUBBUB_KEYCHAIN: "off", WEBKIT_DISABLE_DMABUF_RENDERER: "1", RUST_LOG: "warn" } },
);
try {
  await waitPort(port);
  const first = [];
  const warm = [];
  for (let i = 0; i < runs; i++) {
    const profile = mkdtempSync(join(tmpdir(), "hubbub-bench-app-"));
    first.push(await launch(port, profile));
    warm.push(await launch(port, profile));
    rmSync(profile, { recursive: true, force: true });
  }
  const baseline = await terminalBaseline();
  const mb = (kb) => (kb / 1024).toFixed(1);
  console.log(`app: ${app}`);
  console.log(`processes measured: ${[...new Set(first[0].processes)].join(", ")}`);
  console.log("");
  console.log(`| figure (median of ${runs}) | first run | warm start |`);
  console.log("|---|---:|---:|");
  console.log(`| launch to interactive, ms | ${median(first.map((r) => r.interactiveMs)).toFixed(0)} | ${median(warm.map((r) => r.interactiveMs)).toFixed(0)} |`);
  console.log(`| idle memory after ${idle} s, all processes, PSS MiB | ${mb(median(first.map((r) => r.pss)))} | ${mb(median(warm.map((r) => r.pss)))} |`);
  console.log(`| idle memory after ${idle} s, all processes, RSS MiB (shared pages counted per process) | ${mb(median(first.map((r) => r.rss)))} | ${mb(median(warm.map((r) => r.rss)))} |`);
  for (const kind of Object.keys(first[0].byKind)) {
    const label = kind === "app" ? "the app's own process (Rust core, embedded hub, GTK, WebKit's UI side)" : kind;
    console.log(`| of which ${label}, PSS MiB | ${mb(median(first.map((r) => r.byKind[kind] ?? 0)))} | ${mb(median(warm.map((r) => r.byKind[kind] ?? 0)))} |`);
  }
  if (baseline) {
    const appPss = median(warm.map((r) => r.pss));
    console.log(`| terminal chat (\`hubbub chat\`, same core, no webview), PSS MiB | ${mb(baseline.pss)} | ratio app/terminal ${(appPss / baseline.pss).toFixed(1)}× |`);
  }
  console.log("");
  console.log(`| where the PSS goes (all processes, median of ${runs}) | first run | warm start |`);
  console.log("|---|---:|---:|");
  const kinds = new Set(first.flatMap((r) => Object.keys(r.byMapping)));
  for (const kind of [...kinds].sort((a, b) => median(first.map((r) => r.byMapping[b] ?? 0)) - median(first.map((r) => r.byMapping[a] ?? 0)))) {
    console.log(`| ${kind} | ${mb(median(first.map((r) => r.byMapping[kind] ?? 0)))} | ${mb(median(warm.map((r) => r.byMapping[kind] ?? 0)))} |`);
  }
  console.log("");
  console.log(`runs (first run, ms): ${first.map((r) => r.interactiveMs.toFixed(0)).join(" ")}`);
  console.log(`runs (warm, ms): ${warm.map((r) => r.interactiveMs.toFixed(0)).join(" ")}`);
  if (args.deb && existsSync(args.deb)) {
    const installed = execFileSync("dpkg-deb", ["-f", args.deb, "Installed-Size"], { encoding: "utf8" }).trim();
    console.log(`.deb: ${(statSync(args.deb).size / 1024 / 1024).toFixed(2)} MiB download, ${(Number(installed) / 1024).toFixed(2)} MiB installed (${args.deb.split("/").pop()})`);
  }
} finally {
  driver.kill();
  xvfb.kill();
}
