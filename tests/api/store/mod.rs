//! The store's contract, run against both backends: every test listed below runs once on a SQLite
//! file (`sqlite::NAME`) and once on a PostgreSQL database of its own (`postgres::NAME`). Tests
//! that need a second instance on the same database get one from [`harness::Fixture::another`]:
//! on PostgreSQL a separately opened store (what a second process would have), on SQLite the same
//! store (one instance owns the file). The `postgres_*` modules hold what only a shared
//! PostgreSQL database has.
//!
//! The PostgreSQL server is `LIVESESSION_TEST_POSTGRES`; see `crate::common::postgres`.

mod devices;
mod forget;
mod harness;
mod link;
mod messages;
mod postgres_notices;
mod postgres_partitions;
mod postgres_schema;
mod settings;
mod upkeep;

harness::on_both_backends! {
    settings: [
        a_session_that_never_saved_has_no_row,
        saves_create_the_row_and_bump_the_version_only_on_a_change,
        a_partial_change_keeps_the_other_field,
        a_touch_only_moves_read_at_forward,
        a_save_or_a_post_with_an_earlier_clock_never_moves_read_at_back,
        a_change_a_page_resends_is_applied_once_on_any_instance,
        concurrent_saves_to_one_session_count_every_change,
        a_read_never_returns_a_value_older_than_the_last_acknowledged_write,
        a_save_to_an_existing_row_makes_no_row_and_applies_like_any_save,
    ],
    forget: [
        a_forgotten_session_is_never_written_again,
        a_forget_racing_saves_from_another_instance_leaves_no_row,
        forgetting_a_browser_unlinks_its_messages_from_it,
        forgotten_ids_are_remembered_until_they_expire,
        a_session_with_nothing_saved_is_forgotten_without_a_trace,
        a_forgotten_author_s_post_is_refused_and_no_message_stays_linked_to_it,
    ],
    devices: [
        a_session_s_first_browser_gets_its_device_when_seen,
        a_signed_out_device_is_never_written_again_on_any_instance,
        a_session_takes_at_most_its_most_devices,
        a_device_moved_to_a_new_id_keeps_how_it_was_added,
        idle_devices_are_pruned_and_remembered_and_forgetting_takes_them_all,
        another_instance_finds_which_cookies_were_ended_in_one_question,
        the_row_a_cookie_check_read_is_taken_once_and_never_after_a_write,
    ],
    link: [
        a_link_code_is_spent_once_and_says_why_it_cannot_be_again,
        a_link_code_dies_when_cancelled_replaced_or_its_session_is_forgotten,
        every_live_code_is_listed_with_its_session_for_an_instance_catching_up,
    ],
    messages: [
        a_resent_message_is_stored_once,
        a_message_carries_the_name_its_author_had_when_sending,
        messages_come_in_id_order_with_limits,
        posts_from_two_instances_never_leave_a_gap_behind_a_reader,
        the_message_limit_holds_at_every_post,
        a_session_s_data_is_its_row_with_its_times_and_the_messages_it_sent,
    ],
    upkeep: [
        pruning_takes_only_stale_rows_stalest_first,
        messages_are_pruned_by_age_and_by_count,
        two_instances_pruning_at_once_delete_each_stale_row_once_and_no_fresh_one,
        the_health_check_reads_and_writes,
        each_write_a_request_waits_for_is_timed_once_and_reads_are_not,
    ],
}
