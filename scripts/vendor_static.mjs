// Copies the browser libraries the pages use from node_modules into labshare/static/vendor/,
// each with its licence, so the pages need no CDN. Run: npm install && npm run vendor
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const modules = join(root, "node_modules");
const vendor = join(root, "labshare", "static", "vendor");

// [package, file inside the package, name in vendor/<package dir>/]
const FILES = [
  ["fullcalendar", "index.global.min.js", "fullcalendar.min.js"],
  ["fullcalendar", "LICENSE.md", "LICENSE.md"],
  ["@fullcalendar/core", "locales/zh-cn.global.min.js", "zh-cn.global.min.js"],
  ["chart.js", "dist/chart.umd.min.js", "chart.umd.min.js"],
  ["chart.js", "LICENSE.md", "LICENSE.md"],
  ["htmx.org", "dist/htmx.min.js", "htmx.min.js"],
  ["htmx.org", "LICENSE", "LICENSE"],
];
const DIRS = { fullcalendar: "fullcalendar", "@fullcalendar/core": "fullcalendar", "chart.js": "chartjs", "htmx.org": "htmx" };

rmSync(vendor, { recursive: true, force: true });
const versions = {};
for (const [pkg, file, name] of FILES) {
  const source = join(modules, pkg, file);
  if (!existsSync(source)) throw new Error(`missing ${source}: run npm install first`);
  const target = join(vendor, DIRS[pkg], name);
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(source, target);
  versions[pkg] = JSON.parse(readFileSync(join(modules, pkg, "package.json"), "utf8")).version;
}
writeFileSync(join(vendor, "VERSIONS.json"), JSON.stringify(versions, null, 2) + "\n");
console.log(`vendored into ${vendor}:`, versions);
