// An Express app whose dependencies come from npm (package-lock.json), as App Runner's
// Node.js samples are.
const express = require("express");
const app = express();
app.get("/", (req, res) => res.send(`Hello from Express ${require("express/package.json").version}\n`));
app.listen(process.env.PORT || 8080, "0.0.0.0");
