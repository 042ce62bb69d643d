mod browser;
mod helpers;
mod http;
mod signal;
