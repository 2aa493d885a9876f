import type { FastifyInstance, FastifyPluginCallback } from 'fastify';
import type { Cutover } from '../cutover.js';

export interface CutoverFastifyOptions {
  cutover: Cutover;
}

/**
 * A Fastify plugin: requests a cutover route matches are hijacked before Fastify parses their
 * body and routed by cutover; all other requests continue to the host's own routes and hooks.
 * Register it at the top level (it applies to the whole instance, like fastify-plugin does).
 */
export const cutoverFastify: FastifyPluginCallback<CutoverFastifyOptions> = (fastify: FastifyInstance, opts, done) => {
  const { cutover } = opts;
  fastify.addHook('onRequest', (request, reply, hookDone) => {
    if (!cutover.matches(request.raw)) return hookDone();
    reply.hijack();
    cutover.handler(request.raw, reply.raw);
  });
  // Fastify finishes registering plugins before it listens: waiting here means no request can
  // arrive while cutover does not know its routes yet (matches() would send it to the host).
  cutover.ready.then(() => done(), done);
};

// Same effect as wrapping with fastify-plugin: the hook reaches routes outside this plugin's scope.
(cutoverFastify as unknown as Record<symbol, boolean>)[Symbol.for('skip-override')] = true;

export default cutoverFastify;
