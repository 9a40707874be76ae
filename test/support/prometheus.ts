import http from 'node:http';

/** One scrape: every sample of a Prometheus text exposition, keyed by name and its labels as written. */
export class Scrape {
  private readonly samples = new Map<string, number>();

  constructor(readonly text: string) {
    for (const line of text.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$/.exec(line);
      if (!match) throw new Error(`not a Prometheus sample line: ${line}`);
      this.samples.set(keyOf(match[1]!, parseLabels(match[2] ?? '')), Number(match[3]));
    }
  }

  /** The sample's value; 0 when there is none (a counter not yet incremented). */
  value(name: string, labels: Record<string, string> = {}): number {
    return this.samples.get(keyOf(name, labels)) ?? 0;
  }

  has(name: string, labels: Record<string, string> = {}): boolean {
    return this.samples.has(keyOf(name, labels));
  }

  /** Samples of one metric name whose labels include `match`, with all their labels. */
  series(name: string, match: Record<string, string> = {}): Array<{ labels: Record<string, string>; value: number }> {
    const found: Array<{ labels: Record<string, string>; value: number }> = [];
    for (const [key, value] of this.samples) {
      const [sampleName, labelText] = key.split('\u0000') as [string, string];
      if (sampleName !== name) continue;
      const labels = JSON.parse(labelText) as Record<string, string>;
      if (Object.entries(match).every(([k, v]) => labels[k] === v)) found.push({ labels, value });
    }
    return found;
  }
}

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const m of text.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]!] = m[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
  return labels;
}

function keyOf(name: string, labels: Record<string, string>): string {
  return `${name}\u0000${JSON.stringify(Object.fromEntries(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b))))}`;
}

/** GET http://address/metrics. */
export async function scrape(address: string): Promise<Scrape> {
  const text = await new Promise<string>((resolve, reject) => {
    http
      .get(`http://${address}/metrics`, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`GET /metrics answered ${res.statusCode}: ${body}`))));
      })
      .on('error', reject);
  });
  return new Scrape(text);
}
