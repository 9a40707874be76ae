import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';

/**
 * CPU and memory of processes, read from Linux's /proc: CPU time is
 * utime+stime in clock ticks (/proc/<pid>/stat), memory is VmRSS / VmHWM
 * (/proc/<pid>/status). Every reader answers undefined when the process is
 * gone or /proc is missing, so a benchmark on another OS still runs.
 */
let ticksPerSecond: number | undefined;

export function clockTicksPerSecond(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

interface ProcStat {
  ppid: number;
  /** utime + stime, in clock ticks. */
  cpuTicks: number;
}

function readStat(pid: number, thread?: number): ProcStat | undefined {
  let text: string;
  try {
    text = fs.readFileSync(thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name may contain spaces and parentheses: fields start after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { ppid: Number(fields[1]), cpuTicks: Number(fields[11]) + Number(fields[12]) };
}

/** CPU seconds a process (or one of its threads) has used so far (user + system). */
export function cpuSeconds(pid: number, thread?: number): number | undefined {
  const stat = readStat(pid, thread);
  return stat && stat.cpuTicks / clockTicksPerSecond();
}

/**
 * CPU seconds a process's main thread has used so far: for Node.js the
 * thread that runs all JavaScript (the garbage collector's and libuv's
 * helper threads are the rest of cpuSeconds). Near one core, the process
 * is as busy as it can be; well below, its callers are waiting on
 * something else.
 */
export function mainThreadCpuSeconds(pid: number): number | undefined {
  return cpuSeconds(pid, pid);
}

function statusField(pid: number, field: 'VmRSS' | 'VmHWM'): number | undefined {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Resident set size now, in bytes. */
export function rssBytes(pid: number): number | undefined {
  return statusField(pid, 'VmRSS');
}

/** Peak resident set size over the process's life, in bytes. */
export function peakRssBytes(pid: number): number | undefined {
  return statusField(pid, 'VmHWM');
}

/** Busy and total jiffies of the whole machine (all cores), from /proc/stat. */
function machineTicks(): { busy: number; total: number } | undefined {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const values = line.trim().split(/\s+/).slice(1).map(Number);
    const total = values.reduce((a, b) => a + b, 0);
    const idle = (values[3] ?? 0) + (values[4] ?? 0); // idle + iowait
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

/** CPU seconds used by every child of `parentPid` (PostgreSQL's backends are children of the postmaster). */
function childrenCpu(parentPid: number): Map<number, number> {
  const result = new Map<number, number>();
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return result;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat && stat.ppid === parentPid) result.set(Number(entry), stat.cpuTicks / clockTicksPerSecond());
  }
  return result;
}

/** What a measurement window cost: CPU as % of one core, and the machine's busy share. */
export interface WindowCpu {
  /** CPU of each watched process in the window, % of one core (100 = one core busy). */
  processes: Record<string, number | undefined>;
  /** CPU of each watched process's main thread in the window, % of one core (see mainThreadCpuSeconds). */
  mainThreads: Record<string, number | undefined>;
  /** All of PostgreSQL (postmaster and backends), % of one core; undefined when it is not local. */
  postgres: number | undefined;
  /** The whole machine, % of all cores (100 = every core busy). */
  machine: number | undefined;
}

/** Takes CPU snapshots at the start and end of a measurement window. */
export class CpuWindow {
  private startedAt = 0;
  private start = new Map<string, number | undefined>();
  private mainStart = new Map<string, number | undefined>();
  private pgStart = new Map<number, number>();
  private machineStart: { busy: number; total: number } | undefined;

  constructor(
    private readonly watched: Record<string, number | undefined>,
    private readonly postmasterPid: number | undefined,
  ) {}

  begin(): void {
    this.startedAt = performance.now();
    for (const [name, pid] of Object.entries(this.watched)) {
      this.start.set(name, pid === undefined ? undefined : cpuSeconds(pid));
      this.mainStart.set(name, pid === undefined ? undefined : mainThreadCpuSeconds(pid));
    }
    this.pgStart = this.postmasterPid === undefined ? new Map() : this.postgresCpu();
    this.machineStart = machineTicks();
  }

  end(): WindowCpu {
    const seconds = (performance.now() - this.startedAt) / 1000;
    const share = (before: number | undefined, after: number | undefined) => (before === undefined || after === undefined ? undefined : (100 * (after - before)) / seconds);
    const processes: Record<string, number | undefined> = {};
    const mainThreads: Record<string, number | undefined> = {};
    for (const [name, pid] of Object.entries(this.watched)) {
      processes[name] = share(this.start.get(name), pid === undefined ? undefined : cpuSeconds(pid));
      mainThreads[name] = share(this.mainStart.get(name), pid === undefined ? undefined : mainThreadCpuSeconds(pid));
    }
    let postgres: number | undefined;
    if (this.postmasterPid !== undefined) {
      let used = 0;
      // Backends that started in the window count from zero; those that ended are lost (pools keep theirs).
      for (const [pid, cpu] of this.postgresCpu()) used += cpu - (this.pgStart.get(pid) ?? 0);
      postgres = (100 * used) / seconds;
    }
    const machineEnd = machineTicks();
    const machine =
      this.machineStart && machineEnd && machineEnd.total > this.machineStart.total
        ? (100 * (machineEnd.busy - this.machineStart.busy)) / (machineEnd.total - this.machineStart.total)
        : undefined;
    return { processes, mainThreads, postgres, machine };
  }

  private postgresCpu(): Map<number, number> {
    const all = childrenCpu(this.postmasterPid!);
    const own = cpuSeconds(this.postmasterPid!);
    if (own !== undefined) all.set(this.postmasterPid!, own);
    return all;
  }
}

/** Samples a process's RSS every `intervalMs`; `stop()` answers the samples (bytes). */
export function sampleRss(pid: number, intervalMs: number): { stop(): number[]; samples: number[] } {
  const samples: number[] = [];
  const take = () => {
    const rss = rssBytes(pid);
    if (rss !== undefined) samples.push(rss);
  };
  take();
  const timer = setInterval(take, intervalMs);
  timer.unref();
  return {
    samples,
    stop: () => {
      clearInterval(timer);
      take();
      return samples;
    },
  };
}

/** A description of this machine for the report. */
export function describeMachine(): { cpu: string; cores: number; memoryGb: number; os: string; node: string } {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memoryGb: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
  };
}
