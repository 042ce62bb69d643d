mod browser;
mod helpers;
mod http;
mod lifecycle;
mod loss;
mod router;
mod signal;
mod with_api;
