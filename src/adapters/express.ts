import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Cutover } from '../cutover.js';

/**
 * Connect/Express middleware: requests a cutover route matches are routed (legacy or candidate,
 * with fallback and shadowing as configured); everything else goes on to the host's own routes.
 * Mount it before body parsers: cutover streams request bodies and must see them unread.
 */
export function cutoverMiddleware(cutover: Cutover): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    // Under app.use('/prefix', ...) Express strips the prefix from req.url; routes are written
    // against the full path the client sent.
    const mounted = req.url;
    req.url = req.originalUrl;
    cutover.handler(req, res, () => {
      req.url = mounted;
      next();
    });
  };
}

export default cutoverMiddleware;
