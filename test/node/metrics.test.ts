import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  RESTART_REASONS, UNIT_STATES, escapeLabelValue, renderPrometheus,
} from '../../src/node/metrics.js';
import {
  DURATION_BUCKETS, type FleetSnapshot, type UnitSnapshot,
} from '../../src/node/snapshot.js';

function unit(over: Partial<UnitSnapshot>): UnitSnapshot {
  const buckets = new Array<number>(DURATION_BUCKETS.length + 1).fill(0);
  return {
    identity: '0f1e2d3c-aaaa-bbbb-cccc-000000000001', pid: 101, thread: 0,
    state: 'ready', requests: 0, inflight: 0, malformed: 0, refused: 0,
    notices: 0, durationBuckets: buckets, durationSum: 0, startedAt: 0, ...over,
  };
}

function fleet(): FleetSnapshot {
  const b1 = new Array<number>(DURATION_BUCKETS.length + 1).fill(0);
  b1[0] = 3; b1[4] = 2; b1[DURATION_BUCKETS.length] = 1;
  return {
    masterPid: 100, startedAt: 0, desiredUnits: 4, logDropped: 7,
    restarts: { crash: 2 },
    processes: [
      { pid: 101, slot: 0, generation: 1, rssBytes: 50e6, units: [
        unit({ requests: 6, inflight: 1, durationBuckets: b1, durationSum: 12.5 }),
        unit({ identity: 'we"ird\\id\nx', thread: 1, state: 'draining', malformed: 2 }),
      ] },
      { pid: 102, slot: 1, generation: 3, rssBytes: 60e6, units: [
        unit({ identity: 'u3', pid: 102, refused: 4, state: 'starting' }),
      ] },
    ],
  };
}

interface Sample { name: string; labels: Record<string, string>; value: number }
interface Family { type: string; help: string; samples: Sample[] }

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = `[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"`;
const VALUE = '(?:[+-]?(?:\\d+(?:\\.\\d*)?|\\.\\d+)(?:[eE][+-]?\\d+)?|NaN|[+-]Inf)';
const SAMPLE = new RegExp(`^(${NAME})(?:\\{((?:${LABEL})(?:,${LABEL})*)?\\})? (${VALUE})$`);
const HELP = new RegExp(`^# HELP (${NAME}) (.*)$`);
const TYPE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);

function unescape(v: string): string {
  return v.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
}

function parseLabels(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of (text ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) {
    assert.ok(!(m[1]! in out), `duplicate label ${m[1]}`);
    out[m[1]!] = unescape(m[2]!);
  }
  return out;
}

/** A strict reader of text format 0.0.4: throws on any line off grammar. */
function parseExposition(text: string): Map<string, Family> {
  assert.ok(text.endsWith('\n'), 'document ends with a newline');
  const families = new Map<string, Family>();
  let help = null as { name: string; text: string } | null;
  let current = null as { name: string; family: Family } | null;
  for (const line of text.slice(0, -1).split('\n')) {
    const h = HELP.exec(line);
    const t = TYPE.exec(line);
    const s = SAMPLE.exec(line);
    if (h) {
      assert.ok(!families.has(h[1]!), `${h[1]} declared twice`);
      help = { name: h[1]!, text: h[2]! };
    } else if (t) {
      assert.equal(help?.name, t[1], `TYPE ${t[1]} follows its HELP`);
      const family: Family = { type: t[2]!, help: help!.text, samples: [] };
      families.set(t[1]!, family);
      current = { name: t[1]!, family };
    } else if (s) {
      assert.ok(current, `sample before any TYPE: ${line}`);
      const base: string = current.family.type === 'histogram'
        ? s[1]!.replace(/_(bucket|sum|count)$/, '') : s[1]!;
      assert.equal(base, current.name, `sample ${s[1]} under ${current.name}`);
      const value = s[3] === '+Inf' ? Infinity : s[3] === '-Inf' ? -Infinity : Number(s[3]);
      current.family.samples.push({ name: s[1]!, labels: parseLabels(s[2]), value });
    } else {
      assert.fail(`line off grammar: ${JSON.stringify(line)}`);
    }
  }
  return families;
}

function get(f: Map<string, Family>, name: string): Family {
  const family = f.get(name);
  assert.ok(family, `${name} present`);
  return family;
}

describe('renderPrometheus', () => {
  it('when a fleet is rendered then every line follows the 0.0.4 grammar and every metric has HELP and TYPE', () => {
    const f = parseExposition(renderPrometheus(fleet()));
    assert.deepEqual([...f.keys()].sort(), [
      'm2fleet_inflight_requests', 'm2fleet_log_lines_dropped_total',
      'm2fleet_malformed_messages_total', 'm2fleet_notices_total',
      'm2fleet_process_resident_memory_bytes', 'm2fleet_refused_requests_total',
      'm2fleet_request_duration_seconds', 'm2fleet_requests_total',
      'm2fleet_restarts_total', 'm2fleet_socket_refused_total',
      'm2fleet_transport_requests_total', 'm2fleet_units', 'm2fleet_units_desired',
    ]);
    assert.equal(get(f, 'm2fleet_requests_total').type, 'counter');
    assert.equal(get(f, 'm2fleet_units').type, 'gauge');
  });

  it('when a unit identity holds quote, backslash and newline then the label is escaped and reads back intact', () => {
    const f = parseExposition(renderPrometheus(fleet()));
    const ids = get(f, 'm2fleet_malformed_messages_total').samples.map((s) => s.labels['unit']);
    assert.ok(ids.includes('we"ird\\id\nx'));
    assert.equal(escapeLabelValue('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
  });

  it('then per-unit counters carry pid, thread and unit', () => {
    const f = parseExposition(renderPrometheus(fleet()));
    const samples = get(f, 'm2fleet_requests_total').samples;
    assert.equal(samples.length, 3);
    assert.deepEqual(samples[0], { name: 'm2fleet_requests_total', value: 6,
      labels: { pid: '101', thread: '0', unit: '0f1e2d3c-aaaa-bbbb-cccc-000000000001' } });
    assert.equal(get(f, 'm2fleet_refused_requests_total').samples[2]!.value, 4);
    assert.equal(get(f, 'm2fleet_inflight_requests').samples[0]!.value, 1);
  });

  it('then each unit histogram is cumulative, ends in +Inf, and +Inf equals _count', () => {
    const f = parseExposition(renderPrometheus(fleet()));
    const h = get(f, 'm2fleet_request_duration_seconds');
    assert.equal(h.type, 'histogram');
    const byUnit = new Map<string, Sample[]>();
    for (const s of h.samples) {
      const key = s.labels['unit']!;
      byUnit.set(key, [...(byUnit.get(key) ?? []), s]);
    }
    assert.equal(byUnit.size, 3);
    for (const samples of byUnit.values()) {
      const buckets = samples.filter((s) => s.name.endsWith('_bucket'));
      assert.equal(buckets.length, DURATION_BUCKETS.length + 1);
      const les = buckets.map((b) => Number(b.labels['le'] === '+Inf' ? Infinity : b.labels['le']));
      assert.deepEqual(les, [...DURATION_BUCKETS, Infinity]);
      for (let i = 1; i < buckets.length; i++) {
        assert.ok(buckets[i]!.value >= buckets[i - 1]!.value, 'buckets are cumulative');
      }
      const count = samples.find((s) => s.name.endsWith('_count'))!;
      assert.equal(buckets.at(-1)!.value, count.value);
      assert.ok(samples.some((s) => s.name.endsWith('_sum')));
    }
    const first = byUnit.get('0f1e2d3c-aaaa-bbbb-cccc-000000000001')!;
    assert.deepEqual(first.slice(0, 6).map((s) => s.value), [3, 3, 3, 3, 5, 5]);
    assert.equal(first.at(-2)!.value, 12.5);
    assert.equal(first.at(-1)!.value, 6);
  });

  it('then every restart reason and every unit state is listed, 0 when none', () => {
    const f = parseExposition(renderPrometheus(fleet()));
    const restarts = Object.fromEntries(get(f, 'm2fleet_restarts_total').samples
      .map((s) => [s.labels['reason'], s.value]));
    assert.deepEqual(Object.keys(restarts).sort(), [...RESTART_REASONS].sort());
    assert.equal(restarts['crash'], 2);
    assert.equal(restarts['harakiri'], 0);
    const units = Object.fromEntries(get(f, 'm2fleet_units').samples
      .map((s) => [s.labels['state'], s.value]));
    assert.deepEqual(units, { starting: 1, ready: 1, draining: 1, stopped: 0 });
    assert.deepEqual(Object.keys(units), UNIT_STATES);
  });

  it('then fleet gauges show desired units, RSS per pid and dropped log lines', () => {
    const f = parseExposition(renderPrometheus(fleet()));
    assert.equal(get(f, 'm2fleet_units_desired').samples[0]!.value, 4);
    assert.deepEqual(get(f, 'm2fleet_process_resident_memory_bytes').samples
      .map((s) => [s.labels['pid'], s.value]), [['101', 50e6], ['102', 60e6]]);
    assert.equal(get(f, 'm2fleet_log_lines_dropped_total').samples[0]!.value, 7);
  });

  it('when the fleet has no processes then the document is still valid with zeroed fleet metrics', () => {
    const empty: FleetSnapshot = { masterPid: 1, startedAt: 0, desiredUnits: 2,
      processes: [], restarts: {}, logDropped: 0 };
    const f = parseExposition(renderPrometheus(empty));
    assert.equal(get(f, 'm2fleet_requests_total').samples.length, 0);
    assert.equal(get(f, 'm2fleet_restarts_total').samples.length, RESTART_REASONS.length);
  });
});
