import { int, ms } from './format';
import type { ScenarioReport } from './report';

/**
 * A hand-written SVG: per scenario, one bar per run (the service and each
 * baseline), throughput on the left and p99 latency on the right, both on
 * linear scales from zero.
 */
const COLORS: Array<[RegExp, string]> = [
  [/^service$/, '#d62728'],
  [/^service /, '#ff9896'],
  [/^echo/, '#7f7f7f'],
  [/^same SQL/, '#1f77b4'],
  [/^pgbench same SQL/, '#17becf'],
  [/^pgbench 3-stmt/, '#2ca02c'],
  [/^pgbench 1-stmt/, '#98df8a'],
];
const colorOf = (subject: string) => COLORS.find(([re]) => re.test(subject))?.[1] ?? '#9467bd';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function renderChart(scenarios: ScenarioReport[], title: string, subtitle: string): string {
  const shown = scenarios.filter((s) => s.runs.length > 0);
  const BAR = 13;
  const GAP = 3;
  const BLOCK_GAP = 16;
  const LABEL_W = 170;
  const PANEL_W = 330;
  const LEFT_VALUE_W = 170;
  const RIGHT_VALUE_W = 70;
  const LEFT_X = LABEL_W + 10;
  const RIGHT_X = LEFT_X + PANEL_W + LEFT_VALUE_W + 20;
  const WIDTH = RIGHT_X + PANEL_W + RIGHT_VALUE_W + 10;
  const subjects = [...new Set(shown.flatMap((s) => s.runs.map((r) => r.subject)))];
  const LEGEND_Y = 64;
  const legendRows = Math.ceil(subjects.length / 4);
  const TOP = LEGEND_Y + legendRows * 18 + 34;

  const parts: string[] = [];
  let y = TOP;
  for (const s of shown) {
    // Each scenario has its own scale: the chart compares the service with its baselines,
    // and one batch call (500 credits, seconds of p99) would flatten every other block.
    // A variant (the service with other settings) shares its base scenario's scale.
    const scale = [...s.runs, ...(s.baselinesOf ? (shown.find((b) => b.name === s.baselinesOf)?.runs ?? []) : [])];
    const maxCalls = Math.max(1, ...scale.map((r) => r.callsPerSec));
    const maxP99 = Math.max(1, ...scale.map((r) => r.latencyUs.p99));
    const blockHeight = s.runs.length * (BAR + GAP) - GAP;
    parts.push(`<text x="${LABEL_W}" y="${y + blockHeight / 2 + 4}" text-anchor="end" class="scenario">${esc(s.name)}</text>`);
    for (const r of s.runs) {
      const color = colorOf(r.subject);
      const w1 = (PANEL_W * r.callsPerSec) / maxCalls;
      const w2 = (PANEL_W * r.latencyUs.p99) / maxP99;
      const strong = r.kind === 'service' ? ' stroke="#000" stroke-width="0.8"' : '';
      parts.push(
        `<rect x="${LEFT_X}" y="${y}" width="${w1.toFixed(1)}" height="${BAR}" fill="${color}"${strong}><title>${esc(`${s.name} ${r.subject}: ${int(r.callsPerSec)} calls/s`)}</title></rect>`,
        `<text x="${(LEFT_X + w1 + 4).toFixed(1)}" y="${y + BAR - 3}" class="value">${int(r.callsPerSec)}${r.unitsPerSec !== undefined ? ` (${int(r.unitsPerSec)} ${esc(s.units?.name ?? 'units')}/s)` : ''}</text>`,
        `<rect x="${RIGHT_X}" y="${y}" width="${w2.toFixed(1)}" height="${BAR}" fill="${color}"${strong}><title>${esc(`${s.name} ${r.subject}: p99 ${ms(r.latencyUs.p99)} ms`)}</title></rect>`,
        `<text x="${(RIGHT_X + w2 + 4).toFixed(1)}" y="${y + BAR - 3}" class="value">${ms(r.latencyUs.p99)} ms</text>`,
      );
      y += BAR + GAP;
    }
    y += BLOCK_GAP - GAP;
    parts.push(`<line x1="20" x2="${WIDTH - 10}" y1="${y - BLOCK_GAP / 2}" y2="${y - BLOCK_GAP / 2}" class="sep"/>`);
  }
  const height = y + 10;

  const legend = subjects.map((subject, k) => {
    const lx = 20 + (k % 4) * 230;
    const ly = LEGEND_Y + Math.floor(k / 4) * 18;
    return `<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${colorOf(subject)}"/><text x="${lx + 18}" y="${ly}" class="legend">${esc(subject)}</text>`;
  });

  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="Helvetica, Arial, sans-serif">
<style>
  .title { font-size: 16px; font-weight: bold; }
  .subtitle { font-size: 11px; fill: #444; }
  .axis { font-size: 12px; font-weight: bold; }
  .scenario { font-size: 12px; }
  .value { font-size: 10px; fill: #222; }
  .legend { font-size: 11px; }
  .sep { stroke: #ddd; stroke-width: 1; }
</style>
<rect width="100%" height="100%" fill="#fff"/>
<text x="20" y="24" class="title">${esc(title)}</text>
<text x="20" y="42" class="subtitle">${esc(subtitle)}</text>
${legend.join('\n')}
<text x="${LEFT_X}" y="${TOP - 10}" class="axis">calls/s (higher is better)</text>
<text x="${RIGHT_X}" y="${TOP - 10}" class="axis">p99 latency (lower is better)</text>
<text x="${WIDTH - 10}" y="${TOP - 10}" text-anchor="end" class="subtitle">bars scaled per scenario, from zero</text>
<line x1="${LEFT_X}" x2="${LEFT_X}" y1="${TOP - 4}" y2="${height - 10}" stroke="#888"/>
<line x1="${RIGHT_X}" x2="${RIGHT_X}" y1="${TOP - 4}" y2="${height - 10}" stroke="#888"/>
${parts.join('\n')}
</svg>
`;
}

/** A line chart of RSS samples over time (the soak). */
export function renderRssChart(samples: Array<{ t: number; rssBytes: number }>, title: string, subtitle: string, targetMb = 200): string {
  const W = 900;
  const H = 320;
  const X0 = 70;
  const Y0 = 270;
  const PW = W - X0 - 30;
  const PH = 190;
  const maxT = Math.max(1, ...samples.map((s) => s.t));
  const maxMb = Math.max(targetMb, ...samples.map((s) => s.rssBytes / 1048576)) * 1.1;
  const targetY = Y0 - (PH * targetMb) / maxMb;
  const points = samples.map((s) => `${(X0 + (PW * s.t) / maxT).toFixed(1)},${(Y0 - (PH * s.rssBytes) / 1048576 / maxMb).toFixed(1)}`).join(' ');
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const mbv = maxMb * f;
    const yy = Y0 - PH * f;
    return `<line x1="${X0}" x2="${X0 + PW}" y1="${yy}" y2="${yy}" stroke="#eee"/><text x="${X0 - 6}" y="${yy + 4}" text-anchor="end" font-size="10">${Math.round(mbv)} MB</text>`;
  });
  const xticks = [0, 0.25, 0.5, 0.75, 1].map(
    (f) => `<text x="${X0 + PW * f}" y="${Y0 + 16}" text-anchor="middle" font-size="10">${Math.round(maxT * f)} s</text>`,
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif">
<rect width="100%" height="100%" fill="#fff"/>
<text x="20" y="24" font-size="16" font-weight="bold">${esc(title)}</text>
<text x="20" y="42" font-size="11" fill="#444">${esc(subtitle)}</text>
${ticks.join('\n')}
${xticks.join('\n')}
<line x1="${X0}" x2="${X0 + PW}" y1="${targetY}" y2="${targetY}" stroke="#2ca02c" stroke-dasharray="6 4"/>
<text x="${X0 + PW - 4}" y="${targetY - 5}" text-anchor="end" font-size="10" fill="#2ca02c">target ${targetMb} MB</text>
<polyline points="${points}" fill="none" stroke="#d62728" stroke-width="2"/>
<line x1="${X0}" x2="${X0}" y1="${Y0 - PH}" y2="${Y0}" stroke="#888"/>
<line x1="${X0}" x2="${X0 + PW}" y1="${Y0}" y2="${Y0}" stroke="#888"/>
</svg>
`;
}
