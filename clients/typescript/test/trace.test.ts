/** Trace context: the active OpenTelemetry span goes out as W3C traceparent. */

import * as assert from "node:assert/strict";
import { after, before, test } from "node:test";

import {
  type Context,
  type ContextManager,
  context,
  propagation,
  ROOT_CONTEXT,
  type TextMapPropagator,
  trace,
  TraceFlags,
} from "@opentelemetry/api";
import { TokenPoolClient } from "@tokenpool/client";

import { FakeServer } from "./support/fake-server";

// An SDK would register these; the API alone has no-op ones.
class StackContextManager implements ContextManager {
  private current: Context = ROOT_CONTEXT;
  active(): Context {
    return this.current;
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    ctx: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    const previous = this.current;
    this.current = ctx;
    try {
      return fn.call(thisArg, ...args);
    } finally {
      this.current = previous;
    }
  }
  bind<T>(_ctx: Context, target: T): T {
    return target;
  }
  enable(): this {
    return this;
  }
  disable(): this {
    this.current = ROOT_CONTEXT;
    return this;
  }
}

// W3C trace context's traceparent, as the SDK's W3CTraceContextPropagator writes it.
const w3c: TextMapPropagator = {
  inject(ctx, carrier, setter) {
    const span = trace.getSpanContext(ctx);
    if (span !== undefined) {
      const flags = `0${span.traceFlags.toString(16)}`.slice(-2);
      setter.set(carrier, "traceparent", `00-${span.traceId}-${span.spanId}-${flags}`);
    }
  },
  extract: (ctx) => ctx,
  fields: () => ["traceparent"],
};

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN_ID = "00f067aa0ba902b7";

const fake = new FakeServer();

before(async () => {
  context.setGlobalContextManager(new StackContextManager());
  propagation.setGlobalPropagator(w3c);
  await fake.start();
});

after(() => {
  fake.stop();
  propagation.disable();
  context.disable();
});

test("a call inside a span carries its traceparent; one outside carries none", async () => {
  const client = new TokenPoolClient({ address: fake.address });
  const inSpan = trace.setSpanContext(ROOT_CONTEXT, {
    traceId: TRACE_ID,
    spanId: SPAN_ID,
    traceFlags: TraceFlags.SAMPLED,
  });
  try {
    await context.with(inSpan, () => client.getBudget("b"));
    await client.getBudget("b");
    const chosen = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    await context.with(inSpan, () => client.getBudget("b", { metadata: { traceparent: chosen } }));

    const [traced, untraced, overridden] = fake.received.slice(-3);
    assert.deepEqual(traced?.get("traceparent"), [`00-${TRACE_ID}-${SPAN_ID}-01`]);
    assert.deepEqual(untraced?.get("traceparent"), []);
    assert.deepEqual(overridden?.get("traceparent"), [chosen]);
  } finally {
    client.close();
  }
});
