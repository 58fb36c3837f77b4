// Removes the build folders named on the command line, so that no output of
// a deleted or renamed source survives a rebuild.
"use strict";

const fs = require("node:fs");
const path = require("node:path");

for (const name of process.argv.slice(2)) {
  fs.rmSync(path.join(__dirname, "..", name), { recursive: true, force: true });
}
