mod browser;
mod helpers;
mod http;
mod lifecycle;
mod signal;
mod with_api;
