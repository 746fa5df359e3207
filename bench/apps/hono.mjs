/** The fetch-style (Hono) bench app: GET / answers "hello world\n". */
import { Hono } from 'hono';

const app = new Hono();
app.get('/', (c) => c.text('hello world\n'));
export default app;
