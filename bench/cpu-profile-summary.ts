import fs from 'node:fs';
import path from 'node:path';
import { markdownTable } from './format';

/**
 * Aggregates a V8 .cpuprofile (node --cpu-prof) by function and by package:
 * self time only (time spent in the function's own code, not its callees).
 *
 *   node dist/bench/cpu-profile-summary.js <file.cpuprofile> [top]
 */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  file: string;
  /** Wall time covered by the samples, ms. */
  totalMs: number;
  /** Idle (waiting in the event loop), ms. */
  idleMs: number;
  functions: Array<{ name: string; location: string; group: string; selfMs: number; share: number }>;
  groups: Array<{ group: string; selfMs: number; share: number }>;
}

/** Which part of the stack a frame belongs to: a package, the service's code, Node's internals, or V8. */
export function groupOf(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  const modules = url.lastIndexOf('/node_modules/');
  if (modules !== -1) {
    const rest = url.slice(modules + '/node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (url.startsWith('node:')) return 'node internals';
  if (/\/dist\/src\//.test(url)) return 'credits src/';
  if (/\/dist\/gen\//.test(url)) return 'gen/ (ts-proto)';
  if (/\/dist\/bench\//.test(url)) return 'bench/';
  return 'other';
}

function shortLocation(url: string, line: number): string {
  if (url === '') return '';
  const modules = url.lastIndexOf('/node_modules/');
  const short = modules !== -1 ? url.slice(modules + '/node_modules/'.length) : url.replace(/^file:\/\//, '').replace(/^.*\/dist\//, '');
  return `${short}:${line + 1}`;
}

export function summarizeProfile(file: string, top = 25): ProfileSummary {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  // timeDeltas[i + 1] is the time from sample i to the next: spent where sample i was taken.
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(profile.samples[i]!, (selfUs.get(profile.samples[i]!) ?? 0) + Math.max(0, delta));
  }
  const functions = new Map<string, { name: string; location: string; group: string; us: number }>();
  const groups = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)!.callFrame;
    const name = frame.functionName || '(anonymous)';
    const group = groupOf(frame.url, name);
    totalUs += us;
    if (name === '(idle)') {
      idleUs += us;
      continue;
    }
    const location = shortLocation(frame.url, frame.lineNumber);
    const key = `${name} ${location}`;
    const entry = functions.get(key) ?? { name, location, group, us: 0 };
    entry.us += us;
    functions.set(key, entry);
    groups.set(group, (groups.get(group) ?? 0) + us);
  }
  const busyUs = Math.max(1, totalUs - idleUs);
  return {
    file,
    totalMs: totalUs / 1000,
    idleMs: idleUs / 1000,
    functions: [...functions.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((f) => ({ name: f.name, location: f.location, group: f.group, selfMs: f.us / 1000, share: f.us / busyUs })),
    groups: [...groups.entries()].sort((a, b) => b[1] - a[1]).map(([group, us]) => ({ group, selfMs: us / 1000, share: us / busyUs })),
  };
}

export function renderProfileMarkdown(summary: ProfileSummary, title: string, topFunctions = 25): string {
  const busy = summary.totalMs - summary.idleMs;
  const lines = [
    `### ${title}`,
    '',
    `\`${path.basename(summary.file)}\`: ${(summary.totalMs / 1000).toFixed(1)} s profiled, ${(busy / 1000).toFixed(1)} s on CPU ` +
      `(${Math.round((100 * busy) / Math.max(1, summary.totalMs))}% of the main thread); shares below are of the CPU time.`,
    '',
    'By package (self time):',
    '',
    markdownTable(
      ['group', 'self ms', 'share'],
      summary.groups.slice(0, 15).map((g) => [g.group, g.selfMs.toFixed(0), `${(100 * g.share).toFixed(1)}%`]),
      1,
    ),
    '',
    `Top ${topFunctions} functions (self time):`,
    '',
    markdownTable(
      ['function', 'where', 'group', 'self ms', 'share'],
      summary.functions.slice(0, topFunctions).map((f) => [f.name, f.location, f.group, f.selfMs.toFixed(0), `${(100 * f.share).toFixed(1)}%`]),
      3,
    ),
    '',
  ];
  return lines.join('\n');
}

if (require.main === module) {
  const [file, top] = process.argv.slice(2);
  if (!file) {
    console.error('usage: node dist/bench/cpu-profile-summary.js <file.cpuprofile> [top]');
    process.exit(2);
  }
  const n = top ? Number(top) : 25;
  console.log(renderProfileMarkdown(summarizeProfile(file, n), path.basename(file), n));
}
