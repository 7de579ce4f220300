import { nav } from "./common.js";

nav();
