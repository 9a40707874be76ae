import { ServerInterceptingCall, status, type ServerInterceptor } from '@grpc/grpc-js';
import { CallFigures, type GrpcType, type Metrics } from '../observability/metrics';

/** The services the server answers without the call pipeline: health checks and server reflection. */
export const STANDARD_SERVICE_PATHS = ['/grpc.health.v1.Health/', '/grpc.reflection.v1.ServerReflection/', '/grpc.reflection.v1alpha.ServerReflection/'];

/**
 * go-grpc-prometheus's figures (started, handled by code, handling time,
 * messages in and out) for the calls the call pipeline never sees, those of
 * paths under `prefixes`, counted as recordCallMetrics counts the others:
 * otherwise a dashboard over grpc_server_* missed the health checks and
 * reflection calls the server answered. Every other call passes through
 * untouched (its figures are the pipeline's). A call the client cancels
 * counts as handled with Canceled, as go-grpc-prometheus counts it.
 */
export function standardServiceMetrics(metrics: Metrics, prefixes: readonly string[] = STANDARD_SERVICE_PATHS): ServerInterceptor {
  return (method, call) => {
    // grpc-js types the answer as its class, but the server only uses the interface:
    // the call itself, unwrapped, costs the other calls nothing.
    if (!prefixes.some((prefix) => method.path.startsWith(prefix))) return call as ServerInterceptingCall;
    let figures: CallFigures;
    return new ServerInterceptingCall(call, {
      start: (next) => {
        figures = new CallFigures(metrics.method(method.path, grpcTypeOf(method)));
        next({
          onReceiveMessage: (message, nextMessage) => {
            figures.received();
            nextMessage(message);
          },
          onCancel: () => figures.handled(status.CANCELLED),
        });
      },
      sendMessage: (message, next) => {
        figures.sent();
        next(message);
      },
      sendStatus: (sent, next) => {
        figures.handled(sent.code ?? status.UNKNOWN);
        next(sent);
      },
    });
  };
}

function grpcTypeOf(method: { requestStream: boolean; responseStream: boolean }): GrpcType {
  if (method.requestStream) return method.responseStream ? 'bidi_stream' : 'client_stream';
  return method.responseStream ? 'server_stream' : 'unary';
}
