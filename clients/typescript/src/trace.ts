/**
 * W3C trace context for each call, from the active OpenTelemetry context.
 *
 * `@opentelemetry/api` is an optional peer dependency: when the application
 * has it (and an SDK registered a propagator, as `NodeSDK` does), every call
 * carries `traceparent` (and `tracestate`) through the global propagator, so
 * the daemon's spans join the caller's trace. Without it, nothing is added.
 */

// The part of @opentelemetry/api used here, so that the package's types do
// not depend on it being installed.
interface OtelApi {
  context: { active(): unknown };
  propagation: { inject(context: unknown, carrier: Record<string, string>): void };
}

// undefined: not looked for yet; null: not installed.
let api: OtelApi | null | undefined;

function otelApi(): OtelApi | null {
  if (api === undefined) {
    try {
      api = require("@opentelemetry/api") as OtelApi;
    } catch {
      api = null;
    }
  }
  return api;
}

/** The headers the global propagator injects for the active context; {} without one. */
export function traceMetadata(): Record<string, string> {
  const otel = otelApi();
  if (otel === null) {
    return {};
  }
  const carrier: Record<string, string> = {};
  try {
    otel.propagation.inject(otel.context.active(), carrier);
  } catch {
    // A faulty propagator must not fail the call it would have traced.
    return {};
  }
  return carrier;
}
