//! The pages' languages: English and Korean. Each language's text is in one place (`en.rs`,
//! `ko.rs`), as one [`Messages`] value, so a message missing from a language does not compile.
//!
//! The language of a request is the `herald_lang` cookie (set by the switch in the header) or
//! else the best of `Accept-Language`, or English.

mod en;
mod ko;
pub mod operator;

pub use en::EN;
pub use ko::KO;

/// A language the pages are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    En,
    Ko,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Ko];

    /// The BCP 47 tag, as used in `lang=""`, the cookie and the switch's links.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ko => "ko",
        }
    }

    /// The language's own name, as the switch shows it.
    pub fn own_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Ko => "한국어",
        }
    }

    pub fn messages(self) -> &'static Messages {
        match self {
            Lang::En => &EN,
            Lang::Ko => &KO,
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        Lang::ALL
            .into_iter()
            .find(|lang| lang.code().eq_ignore_ascii_case(code.trim()))
    }

    /// The supported language an `Accept-Language` header likes best (`ko-KR` counts as `ko`);
    /// `None` when it names none of them.
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        let mut best: Option<(Lang, f32)> = None;
        for item in header.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or_default().trim();
            let quality = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or_default();
            let Some(lang) = Lang::from_code(primary) else {
                continue;
            };
            if quality > 0.0 && best.is_none_or(|(_, q)| quality > q) {
                best = Some((lang, quality));
            }
        }
        best.map(|(lang, _)| lang)
    }
}

/// Every text the pages show, in one language.
pub struct Messages {
    pub tagline: &'static str,
    pub skip_to_content: &'static str,
    pub nav_dashboard: &'static str,
    pub nav_account: &'static str,
    pub nav_sign_in: &'static str,
    pub nav_sign_up: &'static str,
    pub nav_sign_out: &'static str,
    pub signed_in_as: &'static str,
    pub language: &'static str,
    pub footer: &'static str,

    pub landing_title: &'static str,
    pub landing_lead: &'static str,
    pub landing_point_notify: &'static str,
    pub landing_point_hooks: &'static str,
    pub landing_point_chat: &'static str,
    pub landing_start: &'static str,
    pub landing_have_account: &'static str,

    pub name: &'static str,
    pub name_hint: &'static str,
    pub email: &'static str,
    pub password: &'static str,
    pub password_hint: &'static str,
    pub current_password: &'static str,
    pub new_password: &'static str,

    pub sign_up_title: &'static str,
    pub sign_up_submit: &'static str,
    pub sign_up_have_account: &'static str,
    pub sign_up_mailed_title: &'static str,
    pub sign_up_mailed_text: &'static str,

    pub verify_title: &'static str,
    pub verify_text: &'static str,
    pub verify_submit: &'static str,
    pub verify_done: &'static str,
    pub link_invalid: &'static str,
    pub link_expired: &'static str,

    pub sign_in_title: &'static str,
    pub sign_in_submit: &'static str,
    pub sign_in_forgot: &'static str,
    pub sign_in_no_account: &'static str,
    pub sign_in_operator: &'static str,
    pub signed_out: &'static str,

    pub forgot_title: &'static str,
    pub forgot_text: &'static str,
    pub forgot_submit: &'static str,
    pub forgot_mailed: &'static str,

    pub reset_title: &'static str,
    pub reset_submit: &'static str,
    pub reset_done: &'static str,

    pub account_title: &'static str,
    pub change_password_title: &'static str,
    pub change_password_submit: &'static str,
    pub password_changed: &'static str,
    pub sessions_title: &'static str,
    pub sessions_text: &'static str,
    pub sessions_submit: &'static str,

    pub error_required: &'static str,
    pub error_name_rule: &'static str,
    pub error_email_rule: &'static str,
    pub error_password_rule: &'static str,
    pub error_name_taken: &'static str,
    pub error_wrong_login: &'static str,
    pub error_wrong_current_password: &'static str,
    pub error_too_many: &'static str,
    pub error_internal: &'static str,
    /// The page for a request that could not be stored (503): its title, and why for a full
    /// disk and for a failing one.
    pub error_storage_title: &'static str,
    pub error_storage_full: &'static str,
    pub error_storage_io: &'static str,
    /// Every password-hashing slot stayed taken (503).
    pub error_busy: &'static str,
    pub form_has_errors: &'static str,
    pub csrf_title: &'static str,
    pub csrf_text: &'static str,
    pub not_found_title: &'static str,
    pub not_found_text: &'static str,
    pub back_home: &'static str,

    pub dashboard_title: &'static str,
    pub dashboard_hello: &'static str,
    pub subscriptions_title: &'static str,
    pub subscriptions_none: &'static str,
    pub subscription_via: &'static str,
    pub last_notifications: &'static str,
    pub notifications_none: &'static str,
    pub messengers_title: &'static str,
    pub messengers_none: &'static str,
    pub messengers_how: &'static str,
    pub muted: &'static str,
    pub blocked: &'static str,
    pub projects_title: &'static str,
    pub projects_none: &'static str,
    pub hook_active: &'static str,
    pub hook_disabled: &'static str,
    pub hooks_none: &'static str,
    pub friend_requests_title: &'static str,
    pub friend_requests_none: &'static str,

    pub nav_messengers: &'static str,
    pub messengers_text: &'static str,
    pub link_code_submit: &'static str,
    pub link_code_intro: &'static str,
    /// The command the bots take, before the code (`link CODE`).
    pub link_command: &'static str,
    pub link_code_valid_until: &'static str,
    pub link_code_bots: &'static str,
    pub link_code_no_bots: &'static str,
    pub unlink_submit: &'static str,
    pub unlinked: &'static str,
    pub not_yours: &'static str,

    // web::projects: projects, webhooks and their delivery log.
    pub nav_projects: &'static str,
    pub projects_page_title: &'static str,
    pub projects_text: &'static str,
    pub project_create_title: &'static str,
    pub project_name: &'static str,
    pub project_name_hint: &'static str,
    pub project_repository: &'static str,
    pub project_repository_hint: &'static str,
    pub project_branches: &'static str,
    pub project_branches_hint: &'static str,
    pub project_create_submit: &'static str,
    pub project_not_found: &'static str,
    pub error_project_taken: &'static str,
    pub error_project_name_rule: &'static str,
    pub project_hooks_title: &'static str,
    pub hook_payload_url: &'static str,
    pub hook_payload_url_hint: &'static str,
    pub hook_secret: &'static str,
    pub hook_secret_hint: &'static str,
    pub hook_create_title: &'static str,
    pub hook_create_submit: &'static str,
    pub hook_created: &'static str,
    pub hook_secret_once: &'static str,
    pub hook_failing_since: &'static str,
    pub hook_disable_submit: &'static str,
    pub hook_enable_submit: &'static str,
    pub hook_delete_submit: &'static str,
    pub hook_ping_submit: &'static str,
    pub hook_log_link: &'static str,
    pub hook_pinged: &'static str,
    pub hook_disabled_done: &'static str,
    pub hook_enabled_done: &'static str,
    pub hook_deleted_done: &'static str,
    pub log_title: &'static str,
    pub log_to: &'static str,
    pub log_filter_title: &'static str,
    pub log_outcome: &'static str,
    pub log_class: &'static str,
    pub log_any: &'static str,
    pub log_from: &'static str,
    pub log_until: &'static str,
    pub log_search: &'static str,
    pub log_filter_submit: &'static str,
    pub log_clear: &'static str,
    pub log_none: &'static str,
    pub log_older: &'static str,
    pub log_newest: &'static str,
    pub log_created: &'static str,
    pub log_attempts: &'static str,
    pub log_no_attempts: &'static str,
    pub log_next_try: &'static str,
    pub log_no_answer: &'static str,
    pub log_answer: &'static str,
    pub log_redeliver_submit: &'static str,
    pub log_redelivered: &'static str,
    pub log_already_pending: &'static str,
    pub log_recover_title: &'static str,
    pub log_recover_text: &'static str,
    pub log_recover_since: &'static str,
    pub log_recover_submit: &'static str,
    pub log_recovered: &'static str,
    pub outcome_pending: &'static str,
    pub outcome_delivered: &'static str,
    pub outcome_failed: &'static str,
    pub outcome_cancelled: &'static str,
    pub error_time: &'static str,
    pub error_delivery_id: &'static str,
    pub hook_added: &'static str,
    // The chat page (issue 22).
    pub nav_chat: &'static str,
    pub chat_title: &'static str,
    pub chat_friends: &'static str,
    pub chat_friends_none: &'static str,
    pub chat_online: &'static str,
    pub chat_offline: &'static str,
    pub chat_accept: &'static str,
    pub chat_decline: &'static str,
    pub chat_add_title: &'static str,
    pub chat_add_label: &'static str,
    pub chat_add_submit: &'static str,
    pub chat_rooms: &'static str,
    pub chat_rooms_none: &'static str,
    pub chat_request_sent: &'static str,
    pub chat_accepted: &'static str,
    pub chat_declined: &'static str,
    pub chat_no_such_user: &'static str,
    pub chat_nothing_to_do: &'static str,
    pub chat_bad_action: &'static str,
    pub chat_not_found: &'static str,
    pub chat_no_messages: &'static str,
    pub chat_message_label: &'static str,
    pub chat_send: &'static str,
    pub chat_older: &'static str,
    pub chat_newest: &'static str,
    pub chat_empty: &'static str,
    pub chat_too_long: &'static str,
    pub chat_back: &'static str,
    pub chat_members: &'static str,
    pub chat_typing: &'static str,
    pub chat_live: &'static str,
    pub chat_connecting: &'static str,
    pub chat_reconnecting: &'static str,
    pub chat_no_script: &'static str,
    pub chat_new_room: &'static str,
    pub chat_room_name: &'static str,
    pub chat_room_with: &'static str,
    pub chat_room_create: &'static str,
    pub chat_room_bad_name: &'static str,
    pub chat_not_a_friend: &'static str,
    pub chat_invite_title: &'static str,
    pub chat_invite_label: &'static str,
    pub chat_invite_submit: &'static str,
    pub chat_invite_none: &'static str,
    pub chat_invited: &'static str,
    pub chat_already_member: &'static str,
    pub chat_leave_title: &'static str,
    pub chat_leave_hint: &'static str,
    pub chat_leave_submit: &'static str,
    pub chat_left: &'static str,
    pub sched_edit: &'static str,
    pub sched_edit_title: &'static str,
    pub sched_save_button: &'static str,
    pub sched_saved: &'static str,
    pub sched_cancel: &'static str,
    pub sched_audience_repository: &'static str,
    pub sched_repository: &'static str,
    pub sched_branch: &'static str,
    pub sched_repository_hint: &'static str,
    pub sched_branch_hint: &'static str,
    pub sched_err_repository: &'static str,
    // subscriptions (web/subscriptions.rs)
    pub nav_schedules: &'static str,
    pub sched_title: &'static str,
    pub sched_intro: &'static str,
    pub sched_none: &'static str,
    pub sched_create: &'static str,
    pub sched_cron: &'static str,
    pub sched_cron_hint: &'static str,
    pub sched_message: &'static str,
    pub sched_message_hint: &'static str,
    pub sched_audience: &'static str,
    pub sched_audience_hint: &'static str,
    pub sched_audience_team: &'static str,
    pub sched_audience_contacts: &'static str,
    pub sched_contacts: &'static str,
    pub sched_no_contacts: &'static str,
    pub sched_channels: &'static str,
    pub sched_channels_hint: &'static str,
    pub sched_every_channel: &'static str,
    pub sched_catch_up: &'static str,
    pub sched_catch_up_hint: &'static str,
    pub sched_urgent: &'static str,
    pub sched_enabled_label: &'static str,
    pub sched_preview_button: &'static str,
    pub sched_preview_title: &'static str,
    pub sched_create_button: &'static str,
    pub sched_created: &'static str,
    pub sched_enabled_notice: &'static str,
    pub sched_disabled_notice: &'static str,
    pub sched_deleted: &'static str,
    pub sched_not_found: &'static str,
    pub sched_enable: &'static str,
    pub sched_disable: &'static str,
    pub sched_delete: &'static str,
    pub sched_state_enabled: &'static str,
    pub sched_state_disabled: &'static str,
    pub sched_urgent_badge: &'static str,
    /// Monday to Sunday, short, separated by spaces (fire times show their weekday).
    pub sched_weekdays: &'static str,
    pub sched_next: &'static str,
    pub sched_never: &'static str,
    pub sched_runs: &'static str,
    pub sched_runs_none: &'static str,
    pub sched_run_sent: &'static str,
    pub sched_run_skipped: &'static str,
    pub sched_run_to: &'static str,
    /// After a recipient of a run held for its digest (quiet hours).
    pub sched_run_held: &'static str,
    pub sched_err_cron: &'static str,
    pub sched_err_message: &'static str,
    pub sched_err_catch_up: &'static str,
    pub sched_err_channels: &'static str,
    pub sched_err_audience: &'static str,
    pub days_title: &'static str,
    pub days_none: &'static str,
    pub days_member: &'static str,
    pub days_kind: &'static str,
    pub days_kind_off: &'static str,
    pub days_kind_half: &'static str,
    pub days_kind_anniversary: &'static str,
    pub days_kind_birthday: &'static str,
    pub days_from: &'static str,
    pub days_to: &'static str,
    pub days_to_hint: &'static str,
    pub days_note: &'static str,
    pub days_note_hint: &'static str,
    pub days_add: &'static str,
    pub days_added: &'static str,
    pub days_removed: &'static str,
    pub days_err_date: &'static str,
    pub days_err_range: &'static str,
    pub days_err_member: &'static str,
    pub days_err_note: &'static str,
    pub unread_title: &'static str,
    pub unread_none: &'static str,
    pub unread_count: &'static str,
    pub nav_subscriptions: &'static str,
    pub subs_title: &'static str,
    pub subs_intro: &'static str,
    pub subs_no_contacts: &'static str,
    pub subs_none_here: &'static str,
    pub subs_quiet_title: &'static str,
    pub subs_time_zone: &'static str,
    pub subs_time_zone_hint: &'static str,
    pub subs_quiet_hours: &'static str,
    pub subs_quiet_hours_hint: &'static str,
    pub subs_quiet_weekends: &'static str,
    pub subs_settings: &'static str,
    pub subs_paths: &'static str,
    pub subs_paths_hint: &'static str,
    pub subs_exclude_authors: &'static str,
    pub subs_exclude_authors_hint: &'static str,
    pub subs_digest: &'static str,
    pub subs_digest_hint: &'static str,
    pub subs_urgent: &'static str,
    pub subs_save: &'static str,
    pub subs_saved: &'static str,
    pub subs_mute: &'static str,
    pub subs_unmute: &'static str,
    pub subs_muted: &'static str,
    pub subs_unmuted: &'static str,
    pub subs_unsubscribe: &'static str,
    pub subs_unsubscribed: &'static str,
    pub subs_add_title: &'static str,
    pub subs_step_repository: &'static str,
    pub subs_step_branch: &'static str,
    pub subs_contact: &'static str,
    pub subs_repository: &'static str,
    pub subs_repository_hint: &'static str,
    pub subs_find_branches: &'static str,
    pub subs_branches_found: &'static str,
    pub subs_branch: &'static str,
    pub subs_branch_hint: &'static str,
    pub subs_subscribe: &'static str,
    pub subs_subscribed: &'static str,
    pub subs_not_found: &'static str,
    pub subs_err_repository: &'static str,
    pub subs_err_repository_not_found: &'static str,
    pub subs_err_unreachable: &'static str,
    pub subs_err_branch: &'static str,
    pub subs_err_branch_not_found: &'static str,
    pub subs_err_globs: &'static str,
    pub subs_err_digest: &'static str,
    pub subs_err_time_zone: &'static str,
    pub subs_err_quiet_hours: &'static str,
    pub subs_err_contact: &'static str,
    pub nav_kb: &'static str,
    pub kb_title: &'static str,
    pub kb_intro: &'static str,
    pub kb_query: &'static str,
    pub kb_search: &'static str,
    pub kb_results: &'static str,
    pub kb_no_hits: &'static str,
    pub kb_err_too_long: &'static str,
    /// The operator's pages.
    pub op: &'static operator::OperatorText,
    pub nav_teams: &'static str,
    pub teams_title: &'static str,
    pub teams_intro: &'static str,
    pub teams_none: &'static str,
    pub teams_morning_at: &'static str,
    pub teams_morning_hint: &'static str,
    pub teams_admin: &'static str,
    pub teams_remove: &'static str,
    pub teams_member_name: &'static str,
    pub teams_member_hint: &'static str,
    pub teams_add_member: &'static str,
    pub teams_create: &'static str,
    pub teams_name: &'static str,
    pub teams_name_hint: &'static str,
    pub teams_created: &'static str,
    pub teams_member_added: &'static str,
    pub teams_member_removed: &'static str,
    pub teams_not_found: &'static str,
    pub teams_admins_only: &'static str,
    pub teams_err_name: &'static str,
    pub teams_err_morning: &'static str,
    pub teams_err_no_account: &'static str,
    pub teams_err_already: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_best_supported_language() {
        assert_eq!(
            Lang::from_accept_language("ko-KR,ko;q=0.9,en-US;q=0.8"),
            Some(Lang::Ko)
        );
        assert_eq!(
            Lang::from_accept_language("en-US,en;q=0.9,ko;q=0.8"),
            Some(Lang::En)
        );
        assert_eq!(
            Lang::from_accept_language("fr-FR, ko;q=0.5, en;q=0.4"),
            Some(Lang::Ko)
        );
        assert_eq!(Lang::from_accept_language("fr, de;q=0.5"), None);
        assert_eq!(
            Lang::from_accept_language("ko;q=0, en;q=0.1"),
            Some(Lang::En)
        );
        assert_eq!(Lang::from_accept_language(""), None);
    }
}
