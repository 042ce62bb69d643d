mod browser;
mod helpers;
mod http;
mod lifecycle;
mod loss;
mod signal;
mod with_api;
