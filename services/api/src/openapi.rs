//! OpenAPI 3 document generated from the handlers' annotations, served at `/api-docs/openapi.json`.

use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

use crate::routes::{
    clients, groups, health, history, legacy_video, members, push, rankings, rooms, timers, todos,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "ppodok API", description = "뽀독뽀독 online study room: v1 contract"),
    paths(
        health::health, health::ready, health::metrics,
        members::login, members::dev_login, members::refresh, members::logout,
        members::me, members::me_in_group, members::withdraw,
        groups::joinable, groups::mine, groups::invite_preview, groups::create, groups::join_by_id,
        groups::join_by_invite, groups::edit, groups::set_color, groups::leave_group,
        todos::list, todos::add, todos::edit, todos::delete,
        clients::register, push::unregister_client, push::subscribe, push::unsubscribe,
        push::vapid_public_key,
        rooms::group_calendar, rooms::my_calendar, rooms::nearest, rooms::book, rooms::cancel,
        rooms::enter, rooms::exit, rooms::sfu_webhook, rooms::video_token,
        legacy_video::sfu_url, legacy_video::token,
        history::server_time, history::get_settings, history::patch_settings,
        history::durations, history::summary, history::heatmap,
        rankings::ranks, rankings::rankings,
        timers::start, timers::pause, timers::resume, timers::stop, timers::current,
    ),
    modifiers(&BearerAuth),
    tags((name = "members"), (name = "groups"), (name = "todos"), (name = "push"), (name = "rooms"), (name = "ops"),
        (name = "study"), (name = "rankings"), (name = "timers"),
        (name = "video", description = "the old Node video server's endpoints, for the existing web client"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}
