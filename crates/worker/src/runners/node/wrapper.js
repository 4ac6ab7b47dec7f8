// Attune's node runner: runs the action module named by process.argv[1] (`node -e`).
//
// - The protocol document is read from stdin with positioned reads, so stdin is still
//   whole for the action (`fs.readFileSync(0)` reads it again). A document that is empty,
//   not JSON, or not an object with `parameters` is refused before any of the action's
//   code runs: a message on stderr and exit code 97 (the runner's INPUT_REFUSED_CODE).
// - A module exporting `run(params)` (async allowed) is called with the parameters; its
//   return value, if any, is printed as the last stdout line (result.output), and the
//   process ends once it settles (with `process.exitCode`, 0 unless the action set it),
//   whatever handles the action left open. A throw or a rejection: its stack on stderr,
//   exit code 1. A module without `run` is a script: it runs as node runs it.
// - CommonJS modules are loaded with require (pack dependencies come from NODE_PATH);
//   ES modules (.mjs, "type": "module") with import().
'use strict';
const fs = require('fs');

function readInput() {
  const chunks = [];
  const buf = Buffer.alloc(64 * 1024);
  let position = 0;
  try {
    for (;;) {
      const n = fs.readSync(0, buf, 0, buf.length, position);
      if (n === 0) break;
      chunks.push(Buffer.from(buf.subarray(0, n)));
      position += n;
    }
  } catch (e) {
    if (e.code === 'ESPIPE') return fs.readFileSync(0); // not a file: read it once
    if (e.code !== 'EOF') throw e;
  }
  return Buffer.concat(chunks);
}

const raw = readInput();
let doc = null;
try {
  doc = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(raw));
} catch (_) {
  doc = null;
}
if (doc === null || typeof doc !== 'object' || Array.isArray(doc) || !('parameters' in doc)) {
  const how = raw.toString('latin1').trim() === '' ? 'is empty' : 'is cut or malformed (' + raw.length + ' bytes)';
  process.stderr.write("attune: the action's input document " + how + '; the action did not run\n');
  process.exit(97);
}

async function load(file) {
  try {
    return require(file);
  } catch (e) {
    if (e && e.code === 'ERR_REQUIRE_ESM') return import(require('url').pathToFileURL(file).href);
    throw e;
  }
}

function fail(e) {
  process.stderr.write(String((e && e.stack) || e) + '\n');
  process.exit(1);
}

load(process.argv[1]).then(async (mod) => {
  if (!mod || typeof mod.run !== 'function') return; // a script: it ran as it loaded
  const result = await mod.run(doc.parameters || {});
  if (result !== undefined) {
    const line = JSON.stringify(result, (_, v) => (typeof v === 'bigint' ? v.toString() : v));
    if (line !== undefined) process.stdout.write(line + '\n');
  }
  process.exit();
}).catch(fail);
