// Type-check Grafana dashboard JSON files against the pinned @grafana/schema.
//
//   node check.mjs DASHBOARD.json...     (after `npm ci` in this directory)
//
// Each dashboard becomes a TypeScript module in build/ whose literals must satisfy the schema's
// types: the dashboard model (Dashboard, RowPanel, VariableModel, AnnotationQuery), and for each
// panel the options and fieldConfig.custom types of its plugin (timeseries, stat, state-timeline,
// heatmap). Object literals get TypeScript's excess-property check, so a key the schema does not
// know (a legacy grafanalib key such as `span` or `intervalFactor`) is an error, like a wrong type.
// Exit status 1 with the compiler's messages (file, line, the offending key) on any error.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const here = path.dirname(fileURLToPath(import.meta.url));
const build = path.join(here, "build");

const PANELCFG = "@grafana/schema/dist/esm/raw/composable";
// panel type -> [module, options type, fieldConfig.custom type or null]
const PLUGINS = {
  timeseries: ["timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen", "Options", "FieldConfig"],
  stat: ["stat/panelcfg/x/StatPanelCfg_types.gen", "Options", null],
  "state-timeline": ["statetimeline/panelcfg/x/StateTimelinePanelCfg_types.gen", "Options", "FieldConfig"],
  heatmap: ["heatmap/panelcfg/x/HeatmapPanelCfg_types.gen", "Options", "FieldConfig"],
};

const PRELUDE = `
import type { Dashboard, RowPanel, Panel, FieldConfig, DataQuery, AnnotationQuery,
  VariableModel } from "@grafana/schema";
${Object.entries(PLUGINS)
  .map(([, [mod]], i) => `import type * as P${i} from "${PANELCFG}/${mod}";`)
  .join("\n")}

// The schema's string enums as the strings a JSON file holds.
type Literal<T> = T extends string ? \`\${T}\` : T extends Array<infer U> ? Array<Literal<U>>
  : T extends object ? { [K in keyof T]: Literal<T[K]> } : T;
// Grafana's Prometheus query (packages/grafana-prometheus, PromQuery), as dashboards save it;
// intervalFactor is deprecated and left out on purpose.
interface PrometheusQuery extends DataQuery {
  expr: string;
  legendFormat?: string;
  format?: "time_series" | "table" | "heatmap";
  range?: boolean;
  instant?: boolean;
  exemplar?: boolean;
  editorMode?: "code" | "builder";
  interval?: string;
}
// The Prometheus annotation's own fields next to the schema's (grafana-prometheus annotations.ts).
interface PrometheusAnnotation extends AnnotationQuery<PrometheusQuery> {
  titleFormat?: string;
  textFormat?: string;
  tagKeys?: string;
  useValueForTime?: boolean;
}
type PanelOf<O, F> = Literal<Omit<Panel, "options" | "fieldConfig" | "targets"> & {
  options: O;
  fieldConfig: { defaults: Omit<FieldConfig, "custom"> & { custom?: F }; overrides: [] };
  targets: PrometheusQuery[];
}>;
type Row = Literal<Omit<RowPanel, "panels"> & { panels: [] }>;
type Model = Literal<Omit<Dashboard, "panels" | "annotations" | "templating"> & {
  annotations: { list: PrometheusAnnotation[] };
  templating: { list: VariableModel[] };
}>;
`;

function panelType(panel) {
  if (panel.type === "row") return "Row";
  const i = Object.keys(PLUGINS).indexOf(panel.type);
  if (i < 0) throw new Error(`panel ${JSON.stringify(panel.title)}: no schema for type ${panel.type}`);
  const [, options, custom] = PLUGINS[panel.type];
  return `PanelOf<P${i}.${options}, ${custom ? `P${i}.${custom}` : "never"}>`;
}

function moduleFor(doc) {
  const lines = [PRELUDE];
  doc.panels.forEach((panel, i) => {
    lines.push(`export const panel${i} = ${JSON.stringify(panel, null, 2)} satisfies ${panelType(panel)};`);
  });
  const rest = { ...doc };
  delete rest.panels;
  lines.push(`export const dashboard = ${JSON.stringify(rest, null, 2)} satisfies Model;`);
  return lines.join("\n") + "\n";
}

const files = process.argv.slice(2);
if (!files.length) {
  console.error("usage: node check.mjs DASHBOARD.json...");
  process.exit(2);
}
fs.mkdirSync(build, { recursive: true });
const roots = files.map((file) => {
  const doc = JSON.parse(fs.readFileSync(file, "utf8"));
  const out = path.join(build, path.basename(file).replace(/\.json$/, ".ts"));
  fs.writeFileSync(out, moduleFor(doc));
  return out;
});
const program = ts.createProgram(roots, {
  strict: true,
  noEmit: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  skipLibCheck: true,
  types: [],
});
const diagnostics = ts.getPreEmitDiagnostics(program);
for (const d of diagnostics) {
  const message = ts.flattenDiagnosticMessageText(d.messageText, "\n");
  if (d.file) {
    const { line } = d.file.getLineAndCharacterOfPosition(d.start ?? 0);
    const text = d.file.text.split("\n")[line].trim();
    console.error(`${path.relative(here, d.file.fileName)}:${line + 1}: ${message}\n    ${text}`);
  } else {
    console.error(message);
  }
}
if (diagnostics.length) {
  console.error(`${diagnostics.length} schema error(s) in ${files.join(", ")}`);
  process.exit(1);
}
console.log(`${files.length} dashboard(s) match @grafana/schema ${JSON.parse(fs.readFileSync(path.join(here, "node_modules/@grafana/schema/package.json"), "utf8")).version}`);
