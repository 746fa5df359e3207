/** The Express bench app: GET / answers "hello world\n" through Express's router. */
import express from 'express';

const app = express();
app.get('/', (req, res) => {
  res.type('text/plain').send('hello world\n');
});
export default app;
