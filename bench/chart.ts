// Charts the benchmarks write beside their tables: Vega-Lite specs rendered to SVG by Vega's
// headless renderer (no browser, no canvas, no network), so `bench/results/*.svg` can be shown
// in the README. Two shapes cover every bench: a line chart (x numeric, one line per series)
// and a grouped bar chart (categories on x, one bar per group).
import * as fs from 'fs';
import * as path from 'path';

// vega-lite publishes its types only through package "exports", which this project's
// `moduleResolution` (node10, from `module: commonjs`) does not read; the build path is the same file.
import type { TopLevelSpec } from 'vega-lite/build/index';
import { arg } from './common';

type VegaLite = typeof import('vega-lite/build/index');
type Vega = typeof import('vega');

export interface Series {
  name: string;
  points: Array<[x: number, y: number]>;
  /** Drawn dashed, for reference lines (a floor, an ideal) next to measurements. */
  dashed?: boolean;
}

export interface LineChart {
  title: string;
  subtitle?: string;
  xTitle: string;
  yTitle: string;
  xLog?: boolean;
  yLog?: boolean;
  /** x takes whole numbers only (positions, prompt numbers): ticks on integers. */
  xInteger?: boolean;
  series: Series[];
}

export interface Bar {
  category: string;
  group: string;
  value: number;
}

export interface BarChart {
  title: string;
  subtitle?: string;
  xTitle: string;
  yTitle: string;
  bars: Bar[];
  /** Draws a horizontal rule at this value (e.g. 1.0 for a ratio). */
  rule?: number;
  /** Category order on x (default: first appearance). */
  categories?: string[];
}

const WIDTH = 560, HEIGHT = 300;
// A white background and a fixed size keep the SVG readable on dark pages and stable in git.
const CONFIG = { background: 'white', font: 'Helvetica, Arial, sans-serif', view: { stroke: null } } as const;

function titleOf(title: string, subtitle?: string) {
  return subtitle ? { text: title, subtitle } : title;
}

export function lineSpec(c: LineChart): TopLevelSpec {
  const values = c.series.flatMap((s) => s.points.map(([x, y]) => ({ series: s.name, x, y, dashed: !!s.dashed })));
  // Axes end at the data (no rounding out to the next power of ten or round number).
  const scale = (log?: boolean) => (log ? { type: 'log' as const, nice: false } : { zero: false, nice: false });
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: titleOf(c.title, c.subtitle),
    width: WIDTH, height: HEIGHT, config: CONFIG,
    data: { values },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: c.xTitle, scale: scale(c.xLog), axis: c.xInteger ? { tickMinStep: 1, format: 'd' } : {} },
      y: { field: 'y', type: 'quantitative', title: c.yTitle, scale: scale(c.yLog) },
      color: { field: 'series', type: 'nominal', title: null, sort: c.series.map((s) => s.name), legend: { orient: 'bottom', columns: c.series.length <= 4 ? c.series.length : 2, labelLimit: 400 } },
      strokeDash: { field: 'dashed', type: 'nominal', legend: null, scale: { domain: [false, true], range: [[1, 0], [5, 4]] } },
    },
  };
}

export function barSpec(c: BarChart): TopLevelSpec {
  const categories = c.categories ?? [...new Set(c.bars.map((b) => b.category))];
  const groups = [...new Set(c.bars.map((b) => b.group))];
  const bars = {
    mark: { type: 'bar' as const },
    encoding: {
      x: { field: 'category', type: 'nominal' as const, title: c.xTitle, sort: categories, axis: { labelAngle: 0 } },
      xOffset: { field: 'group', type: 'nominal' as const, sort: groups },
      y: { field: 'value', type: 'quantitative' as const, title: c.yTitle },
      color: { field: 'group', type: 'nominal' as const, title: null, sort: groups, legend: { orient: 'bottom' as const, labelLimit: 400 } },
      tooltip: [{ field: 'category' }, { field: 'group' }, { field: 'value', format: '.3~f' }],
    },
  };
  const perCategory = Math.max(16, Math.min(90, 24 * groups.length));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: titleOf(c.title, c.subtitle),
    width: Math.max(WIDTH, categories.length * perCategory), height: HEIGHT, config: CONFIG,
    data: { values: c.bars },
    layer: c.rule === undefined ? [bars] : [bars, { mark: { type: 'rule', strokeDash: [4, 3], color: 'gray' }, encoding: { y: { datum: c.rule } } }],
  } as TopLevelSpec;
}

// Both packages are ES modules; a runtime import works from the commonjs build and vite-node alike.
async function renderers(): Promise<{ vega: Vega; vl: VegaLite }> {
  const [vega, vl] = await Promise.all([import('vega' as string) as Promise<Vega>, import('vega-lite' as string) as Promise<VegaLite>]);
  return { vega, vl };
}

export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const { vega, vl } = await renderers();
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Renders the chart and writes it beside the bench's table: bench/results/<table>[-suffix].svg,
 *  or next to `--out` when the table goes elsewhere. A chart that fails to render is reported
 *  and skipped: the table is the result, the picture only shows it. */
export async function publishChart(spec: TopLevelSpec, tableFile: string, suffix = ''): Promise<void> {
  const table = arg('out', path.join('bench', 'results', tableFile));
  const out = table.replace(/\.md$/, '') + (suffix ? `-${suffix}` : '') + '.svg';
  try {
    const svg = await renderSvg(spec);
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, svg + '\n');
    console.error(`(chart written to ${out})`);
  } catch (e) {
    console.error(`chart ${out} not written: ${(e as Error).message}`);
  }
}
