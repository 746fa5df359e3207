/**
 * The bench harness's own cheap, deterministic pieces: the generator's
 * Mongrel2 frames (checked with m2fleet's parser and against a wire
 * capture), reply splitting, response framing, wrk output, statistics,
 * targets and the report. Nothing here measures or asserts a time.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseMessage, classifyMessage, creditsOf } from '../../src/handler/message.js';
import { encodeClose, encodeReply } from '../../src/handler/reply.js';
import { loadCapture } from '../helpers/captures.js';
import { niceScale, renderChartSvg } from '../../bench/lib/chart.ts';
import { summarizeProfile, topByFile, topBySelf, type CpuProfile } from '../../bench/lib/cpuprofile.ts';
import type { BenchData } from '../../bench/lib/model.ts';
import {
  buildCreditsNotice, buildHttpRequestFrame, buildRequestFrame, parseReplyFrame,
} from '../../bench/lib/mongrel2-message.ts';
import { httpTable, markdownReport, rootShare, rssGrowthPercent, targetRows } from '../../bench/lib/report.ts';
import { ResponseTracker, readHead } from '../../bench/lib/response-tracker.ts';
import { processReadyTimes } from '../../bench/lib/servers.ts';
import {
  formatRate, formatRatio, formatSummary, markdownTable, median, pairedRatio, percentile, summarize,
} from '../../bench/lib/stats.ts';
import { judge, judgeFlag } from '../../bench/lib/targets.ts';
import { parseDurationMs, parseWrkOutput, postScript } from '../../bench/lib/wrk.ts';
import { jsonBody } from '../../bench/run.ts';

describe('bench: the generator frames, read by m2fleet', () => {
  it('when a GET is built then parseMessage reads Mongrel2 keys and an empty body', () => {
    const frame = buildHttpRequestFrame({ sender: 'bench-gen', connId: 42, uri: '/a/b?x=1&y=2' });
    const m = parseMessage(frame);
    assert.equal(m.sender, 'bench-gen');
    assert.equal(m.connId, '42');
    assert.equal(m.path, '/a/b');
    assert.equal(m.protocol, 'json');
    assert.equal(m.headers['METHOD'], 'GET');
    assert.equal(m.headers['VERSION'], 'HTTP/1.1');
    assert.equal(m.headers['URI'], '/a/b?x=1&y=2');
    assert.equal(m.headers['QUERY'], 'x=1&y=2');
    assert.equal(m.headers['PATH'], '/a/b');
    assert.equal(m.headers['host'], 'localhost');
    assert.equal(m.body.length, 0);
    assert.equal(classifyMessage(m), 'http');
  });

  it('when a POST with a body is built then the body and content-length survive', () => {
    const body = Buffer.from(jsonBody());
    const frame = buildHttpRequestFrame({
      sender: 'g', connId: 1, method: 'POST', uri: '/echo', body, headers: { 'content-type': 'application/json' },
    });
    const m = parseMessage(frame);
    assert.equal(m.headers['METHOD'], 'POST');
    assert.equal(m.headers['content-length'], '1024');
    assert.deepEqual(Buffer.from(m.body), body);
  });

  it('when headers are tnetstring-encoded then repeated headers become lists', () => {
    const frame = buildRequestFrame({
      sender: 'g', connId: 7, path: '/t', protocol: 'tnetstring',
      headers: { PATH: '/t', METHOD: 'GET', VERSION: 'HTTP/1.1', 'x-dup': ['one', 'two'] },
    });
    const m = parseMessage(frame);
    assert.equal(m.protocol, 'tnetstring');
    assert.deepEqual(m.headers['x-dup'], ['one', 'two']);
  });

  it('when flow control is played then the first request carries DOWNLOAD_CREDITS', () => {
    const m = parseMessage(buildHttpRequestFrame({ sender: 'g', connId: 3, extra: { DOWNLOAD_CREDITS: '102400' } }));
    assert.equal(creditsOf(m), 102400);
  });

  it('when a credits notice is built then it equals Mongrel2 1.12.2 byte for byte', () => {
    const captured = loadCapture('json-download-credits');
    const built = buildCreditsNotice('a1b2c3d4-json-0000-0000-000000000001', 2, 43);
    assert.deepEqual(built, captured);
    assert.equal(classifyMessage(parseMessage(built)), 'notice-credits');
  });

  it('the 1 KB echo body is exactly 1024 bytes of JSON', () => {
    assert.equal(Buffer.byteLength(jsonBody()), 1024);
    assert.doesNotThrow(() => JSON.parse(jsonBody()));
  });
});

describe('bench: reply frames and responses', () => {
  it('when m2fleet encodes a reply then the generator splits sender, ids and body', () => {
    const frame = encodeReply('bench-gen', ['5', '17'], Buffer.from('HTTP/1.1 200 OK\r\n\r\n'));
    const r = parseReplyFrame(frame);
    assert.ok(r);
    assert.equal(r.sender, 'bench-gen');
    assert.deepEqual(r.ids, [5, 17]);
    assert.equal(frame.subarray(r.bodyAt).toString(), 'HTTP/1.1 200 OK\r\n\r\n');
  });

  it('when m2fleet encodes a close then the body is empty', () => {
    const frame = encodeClose('bench-gen', ['9']);
    const r = parseReplyFrame(frame);
    assert.ok(r);
    assert.equal(r.bodyAt, frame.length);
  });

  it('when a reply breaks the grammar then it is refused', () => {
    assert.equal(parseReplyFrame(Buffer.from('bench 3:1, x')), null);
    assert.equal(parseReplyFrame(Buffer.from('bench 1:1,x')), null);
    assert.equal(parseReplyFrame(Buffer.from('nospace')), null);
  });

  it('when a response comes in one frame then it completes at once', () => {
    const t = new ResponseTracker();
    assert.equal(t.feed(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nhello world\n')), 'complete');
    assert.equal(t.frames, 1);
    assert.equal(t.status, 200);
  });

  it('when a response is split over frames then it completes on the last and counts them', () => {
    const t = new ResponseTracker();
    assert.equal(t.feed(Buffer.from('HTTP/1.1 200 OK\r\nconnection: close\r\nContent-Len')), 'partial');
    assert.equal(t.feed(Buffer.from('gth: 5\r\n\r\nab')), 'partial');
    assert.equal(t.feed(Buffer.from('cde')), 'complete');
    assert.equal(t.frames, 3);
    assert.equal(t.close, true);
    t.reset();
    assert.equal(t.frames, 0);
  });

  it('when a response is chunked then the last chunk completes it', () => {
    const t = new ResponseTracker();
    assert.equal(t.feed(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n')), 'partial');
    assert.equal(t.feed(Buffer.from('0\r\n\r\n')), 'complete');
  });

  it('when bytes are not HTTP then the head is unreadable', () => {
    assert.equal(readHead('SMTP ready'), null);
    assert.equal(new ResponseTracker().feed(Buffer.from('garbage\r\n\r\n')), 'malformed');
  });
});

const WRK_SAMPLE = `Running 5s test @ http://127.0.0.1:8080/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   213.45us   50.12us   2.01ms   90.12%
    Req/Sec    35.12k     1.23k   38.00k    70.00%
  Latency Distribution
     50%  200.00us
     75%  220.00us
     90%  250.00us
     99%    1.40ms
  175612 requests in 5.00s, 20.12MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 12
Requests/sec:  35122.40
Transfer/sec:      4.02MB
`;

describe('bench: wrk', () => {
  it('when wrk reports then rate, percentiles and errors are read', () => {
    const r = parseWrkOutput(WRK_SAMPLE);
    assert.equal(r.requestsPerSecond, 35122.4);
    assert.equal(r.requests, 175612);
    assert.equal(r.latencyMs.p50, 0.2);
    assert.equal(r.latencyMs.p99, 1.4);
    assert.equal(r.socketErrors, 3);
    assert.equal(r.non2xx, 12);
  });

  it('when wrk printed no result then reading it throws', () => {
    assert.throws(() => parseWrkOutput('unable to connect to 127.0.0.1:1'), /Requests\/sec/);
  });

  it('durations convert to milliseconds', () => {
    assert.equal(parseDurationMs('500us'), 0.5);
    assert.equal(parseDurationMs('2s'), 2000);
    assert.ok(Number.isNaN(parseDurationMs('fast')));
  });

  it('the POST script sets method, body and content type', () => {
    const lua = postScript('{"a":"b\\"c"}');
    assert.match(lua, /wrk.method = "POST"/);
    assert.match(lua, /wrk.body = "\{\\"a\\":\\"b\\\\\\"c\\"\}"/);
  });
});

describe('bench: statistics and formatting', () => {
  it('median, percentile and summary', () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 2, 3]), 2.5);
    assert.equal(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50), 5);
    assert.equal(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 99), 10);
    assert.equal(percentile([], 50), 0);
    assert.deepEqual(summarize([2, NaN, 4, 3]), { median: 3, min: 2, max: 4, n: 3 });
  });

  it('when ratios are paired then each round is divided by its own partner', () => {
    const s = pairedRatio([10, 20, 30], [5, 20, NaN]);
    assert.deepEqual(s, { median: 1.5, min: 1, max: 2, n: 2 });
  });

  it('rates, ranges and ratios read well', () => {
    assert.equal(formatRate(35122.4), '35.1k');
    assert.equal(formatRate(1234), '1.23k');
    assert.equal(formatRate(189), '189');
    assert.equal(formatRate(0), '0');
    assert.equal(formatRate(2_500_000), '2.50M');
    assert.equal(formatSummary({ median: 35000, min: 34000, max: 36500, n: 3 }), '35.0k (34.0k–36.5k)');
    assert.equal(formatSummary({ median: NaN, min: NaN, max: NaN, n: 0 }), '–');
    assert.equal(formatRatio({ median: 1.234, min: 1.1, max: 1.3, n: 3 }), '1.23× (1.10–1.30)');
  });

  it('markdown tables escape pipes', () => {
    assert.equal(markdownTable(['a', 'b'], [['x|y', '1']]), '| a | b |\n| --- | --- |\n| x\\|y | 1 |');
  });

  it('chart axes end on round numbers', () => {
    assert.deepEqual(niceScale(37_000), { top: 40_000, step: 10_000 });
    assert.deepEqual(niceScale(0), { top: 1, step: 0.25 });
  });
});

describe('bench: targets', () => {
  it('when the median passes then met, else missed, and without data not run', () => {
    assert.equal(judge({ target: 't', value: summarize([1.1, 0.9, 1.2]), op: '>=', threshold: 1, unit: '×' }).status, 'met');
    assert.equal(judge({ target: 't', value: summarize([20, 16]), op: '<=', threshold: 15, unit: 'µs' }).status, 'missed');
    assert.equal(judge({ target: 't', value: null, op: '<=', threshold: 15, unit: 'µs' }).status, 'not run');
    assert.equal(judgeFlag('k', 'g', null, '').status, 'not run');
    assert.equal(judgeFlag('k', 'g', true, 'ok').status, 'met');
  });

  it('RSS growth is the largest per-process growth from first to last sample', () => {
    assert.equal(rssGrowthPercent([{ rssMiB: [50, 100] }, { rssMiB: [55, 101] }]), 10);
    assert.equal(rssGrowthPercent([{ rssMiB: [50] }]), null);
    // A heap swinging between collections is no growth; a climb is.
    const swing = [100, 80, 100, 80, 100, 80, 100, 80].map((v) => ({ rssMiB: [v] }));
    assert.equal(rssGrowthPercent(swing), 0);
    const climb = [80, 100, 82, 102, 90, 110, 92, 120].map((v) => ({ rssMiB: [v] }));
    assert.equal(rssGrowthPercent(climb), 20);
  });

  it('the master share is the root pid\'s part of the handler CPU', () => {
    const base = { cpuSecondsByPid: { 10: 1, 20: 3 } } as unknown as Parameters<typeof rootShare>[0];
    assert.equal(rootShare({ ...base, rootPid: 20 }), 0.75);
    assert.equal(rootShare(base), 0.25);
    assert.equal(rootShare({ ...base, cpuSecondsByPid: { 10: 1 } }), null);
  });

  it('worker ready times come from the master log', () => {
    const log = [
      '{"time":"2026-12-04T19:30:50.434Z","msg":"process starting","workerPid":9}',
      'not json',
      '{"time":"2026-12-04T19:30:50.634Z","msg":"process ready","workerPid":9}',
    ].join('\n');
    assert.deepEqual(processReadyTimes(log), [200]);
  });
});

function sampleData(): BenchData {
  const wrk = (rps: number) => ({ requestsPerSecond: rps, requests: rps * 5, latencyMs: { p50: 0.4, p99: 1.2 }, socketErrors: 0, non2xx: 0 });
  return {
    meta: { date: 'd', commit: 'c', machine: 'm', node: '20', mode: 'quick', rounds: 2, seconds: 1, handlerOnlySeconds: 1, minutes: 1 },
    servers: [{ id: 'm2f-p1', label: 'm2fleet -p 1', colour: '#000' }, { id: 'python', label: 'Python', colour: '#0f0' }],
    workloads: [{ id: 'hello', title: 'hello', base: 'm2f-p1', concurrencies: [8], servers: ['m2f-p1', 'python'] }],
    http: [
      { workload: 'hello', server: 'm2f-p1', concurrency: 8, rounds: [wrk(20_000), wrk(30_000)] },
      { workload: 'hello', server: 'python', concurrency: 8, rounds: [wrk(10_000), wrk(30_000)] },
    ],
    handlerOnly: [],
    longRss: null,
    notes: ['a note'],
  };
}

describe('bench: the report', () => {
  it('when two setups ran then the table shows medians, ranges and the paired ratio', () => {
    const t = httpTable(sampleData());
    assert.equal(t.rows.length, 2);
    assert.equal(t.rows[0]![2], '25.0k (20.0k–30.0k)');
    assert.equal(t.rows[1]![2], '20.0k (10.0k–30.0k) · 1.50× (1.00–2.00)');
    assert.equal(t.rows[0]![3], '0.40 ms / 1.20 ms');
  });

  it('when parts did not run then their targets say so', () => {
    const rows = targetRows(sampleData());
    const python = rows.find((r) => r.target.includes('Python'))!;
    assert.equal(python.status, 'met');
    assert.equal(rows.find((r) => r.target.includes('CPU per request'))!.status, 'not run');
    assert.match(markdownReport(sampleData(), 'bench.png'), /!\[throughput[^\]]*\]\(bench\.png\)/);
  });

  it('the chart is one SVG with a panel per workload', () => {
    const svg = renderChartSvg('t', 's', [{ title: 'hello <&>', concurrencies: [8], series: [
      { label: 'a', colour: '#111', values: [summarize([1, 2, 3])] },
    ] }]);
    assert.match(svg, /^<svg /);
    assert.match(svg, /hello &lt;&amp;&gt;/);
  });
});

describe('bench: CPU profiles', () => {
  it('self and total time are summed per function', () => {
    const profile: CpuProfile = {
      nodes: [
        { id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1 }, children: [2, 4] },
        { id: 2, callFrame: { functionName: 'outer', url: 'file:///r/dist/a.js', lineNumber: 0 }, children: [3] },
        { id: 3, callFrame: { functionName: 'inner', url: 'file:///r/node_modules/z/b.js', lineNumber: 9 } },
        { id: 4, callFrame: { functionName: '(idle)', url: '', lineNumber: -1 } },
      ],
      samples: [3, 3, 2, 4],
      timeDeltas: [1000, 1000, 2000, 5000],
      startTime: 0,
      endTime: 9000,
    };
    const s = summarizeProfile(profile);
    const outer = s.functions.find((f) => f.name === 'outer')!;
    assert.equal(outer.selfMs, 2);
    assert.equal(outer.totalMs, 4);
    assert.equal(outer.where, 'dist/a.js:1');
    assert.equal(s.functions.find((f) => f.name === 'inner')!.where, 'z/b.js:10');
    assert.match(topBySelf(s, 1)[0]!, /50\.0%\s+2 ms\s+inner/);
    assert.equal(topByFile(s, 5).length, 2);
  });
});
