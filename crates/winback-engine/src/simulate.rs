//! The simulator's behaviour model: how simulated contacts respond to messages and offers.
//!
//! `winback simulate` and `winback demo` run the real engine over a simulated population in
//! virtual time; this module decides, with a seeded random generator, what each contact does
//! when a message arrives. Baseline purchases (with or without messages) come from the fitted
//! purchase model through [`baseline_purchase_probability`]; a message adds an uplift that
//! depends on the contact's P(alive), engagement and the offer, so holdouts measure something
//! real and fixed-amount discounts outperform percentages as seed 003 reports.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::definition::OfferKind;

/// Response model parameters (`[simulation]` in `winback.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResponseModel {
    /// Chance a human opens an email, for an engaged contact.
    pub open_rate: f64,
    /// Factor on the open rate for contacts without human engagement in 180 days.
    pub inactive_open_factor: f64,
    /// Chance of a click given an open.
    pub click_given_open: f64,
    /// Chance a click leads to an order within the conversion window, times P(alive)
    /// (or the base for unscored contacts).
    pub order_given_click: f64,
    /// Multiplier on ordering for a fixed-amount offer (seed 003: about twice a percentage).
    pub fixed_offer_lift: f64,
    /// Multiplier for a percentage offer.
    pub percent_offer_lift: f64,
    /// Multiplier for free shipping or a free product.
    pub other_offer_lift: f64,
    /// Chance a survey email gets an answer, given an open.
    pub survey_answer_given_open: f64,
    /// Chance a message leads to an unsubscribe.
    pub unsubscribe_rate: f64,
    /// Chance a message draws a spam complaint.
    pub complaint_rate: f64,
    /// Chance an email hard-bounces (dead address).
    pub hard_bounce_rate: f64,
    /// Cost of one email, minor units (ESP fees).
    pub email_cost_minor: i64,
    /// Cost of one SMS, minor units.
    pub sms_cost_minor: i64,
    /// Chance customer service reaches a listed contact on one try.
    pub call_reach_rate: f64,
    /// Chance a reached contact accepts the offer on the phone.
    pub call_accept_rate: f64,
    /// Chance an accepted offer is used in an order.
    pub order_given_accept: f64,
    /// Chance a reached contact (who did not accept) says why they left.
    pub call_reason_rate: f64,
    /// Chance a reached contact asks never to be called again.
    pub do_not_call_rate: f64,
    /// Chance a reached contact asks for fewer emails.
    pub fewer_emails_rate: f64,
    /// Chance a contact adds a wallet pass they were given to their wallet.
    pub wallet_add_rate: f64,
    /// Chance a pass in a wallet (its code always at hand) leads to an order with the code,
    /// times P(alive); an update (the next rung, a reminder) gives the same chance again, halved.
    pub order_given_pass: f64,
}

impl Default for ResponseModel {
    fn default() -> Self {
        Self {
            open_rate: 0.30,
            inactive_open_factor: 0.35,
            click_given_open: 0.18,
            order_given_click: 0.35,
            fixed_offer_lift: 2.0,
            percent_offer_lift: 1.0,
            other_offer_lift: 1.3,
            survey_answer_given_open: 0.25,
            unsubscribe_rate: 0.004,
            complaint_rate: 0.0003,
            hard_bounce_rate: 0.004,
            email_cost_minor: 1,
            sms_cost_minor: 8,
            call_reach_rate: 0.55,
            call_accept_rate: 0.25,
            order_given_accept: 0.7,
            call_reason_rate: 0.3,
            do_not_call_rate: 0.05,
            fewer_emails_rate: 0.05,
            wallet_add_rate: 0.35,
            order_given_pass: 0.12,
        }
    }
}

/// What a listed contact does when customer service calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallResponse {
    /// The outcome the agent records.
    pub outcome: winback_domain::CallOutcome,
    /// With [`winback_domain::CallOutcome::ReasonForLeaving`].
    pub reason: Option<winback_domain::LeaveReason>,
    /// Days after the call an order followed, if one did.
    pub order_after_days: Option<u32>,
}

/// Draws what one call comes to. An accepted offer turns into an order at
/// `order_given_accept` times how alive the contact still is.
pub fn respond_to_call<R: Rng>(model: &ResponseModel, p_alive: f64, rng: &mut R) -> CallResponse {
    use winback_domain::{CallOutcome as O, LeaveReason};
    let mut r = CallResponse {
        outcome: O::NotReached,
        reason: None,
        order_after_days: None,
    };
    if !rng.gen_bool(model.call_reach_rate.clamp(0.0, 1.0)) {
        return r;
    }
    let x: f64 = rng.r#gen();
    let dnc = model.do_not_call_rate.clamp(0.0, 1.0);
    let fewer = dnc + model.fewer_emails_rate.clamp(0.0, 1.0);
    let accept = fewer + model.call_accept_rate.clamp(0.0, 1.0);
    r.outcome = if x < dnc {
        O::DoNotCall
    } else if x < fewer {
        O::WantsFewerEmails
    } else if x < accept {
        O::OfferAccepted
    } else if rng.gen_bool(model.call_reason_rate.clamp(0.0, 1.0)) {
        r.reason = Some(LeaveReason::ALL[rng.gen_range(0..LeaveReason::ALL.len())]);
        O::ReasonForLeaving
    } else {
        O::Reached
    };
    if r.outcome == O::OfferAccepted
        && rng.gen_bool((model.order_given_accept * (0.3 + 0.7 * p_alive)).clamp(0.0, 0.95))
    {
        r.order_after_days = Some(rng.gen_range(0..10));
    }
    r
}

/// What a contact does about one message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Response {
    /// The address is dead.
    pub hard_bounce: bool,
    /// Hours after delivery a human opened, if they did.
    pub open_after_hours: Option<u32>,
    /// Clicked (after the open).
    pub click: bool,
    /// Days after delivery an order followed, if one did.
    pub order_after_days: Option<u32>,
    /// Answered the survey.
    pub survey_answer: bool,
    /// Unsubscribed.
    pub unsubscribe: bool,
    /// Marked as spam.
    pub complaint: bool,
}

/// Who receives the message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recipient {
    /// P(alive) from the purchase model (0.5 when unscored).
    pub p_alive: f64,
    /// No human email engagement in 180 days.
    pub email_inactive: bool,
    /// The message is an SMS (no opens; a share reads and clicks).
    pub sms: bool,
}

/// Draws the response to one message, with `offer` the enrolment's current offer.
pub fn respond<R: Rng>(
    model: &ResponseModel,
    who: Recipient,
    offer: Option<&OfferKind>,
    asks_survey: bool,
    rng: &mut R,
) -> Response {
    let mut r = Response::default();
    if !who.sms && rng.gen_bool(model.hard_bounce_rate.clamp(0.0, 1.0)) {
        r.hard_bounce = true;
        return r;
    }
    let open_p = if who.sms {
        0.9
    } else if who.email_inactive {
        model.open_rate * model.inactive_open_factor
    } else {
        model.open_rate
    };
    if rng.gen_bool(open_p.clamp(0.0, 1.0)) {
        r.open_after_hours = Some(rng.gen_range(0..72));
        if asks_survey && rng.gen_bool(model.survey_answer_given_open.clamp(0.0, 1.0)) {
            r.survey_answer = true;
        }
        if rng.gen_bool(model.click_given_open.clamp(0.0, 1.0)) {
            r.click = true;
            let lift = match offer {
                Some(OfferKind::Fixed { .. }) => model.fixed_offer_lift,
                Some(OfferKind::Percent { .. }) => model.percent_offer_lift,
                Some(_) => model.other_offer_lift,
                None => 1.0,
            };
            let p = (model.order_given_click * (0.3 + 0.7 * who.p_alive) * lift).clamp(0.0, 0.95);
            if rng.gen_bool(p) {
                r.order_after_days = Some(rng.gen_range(0..10));
            }
        }
    }
    r.unsubscribe = rng.gen_bool(model.unsubscribe_rate.clamp(0.0, 1.0));
    r.complaint = !who.sms && rng.gen_bool(model.complaint_rate.clamp(0.0, 1.0));
    r
}

/// The chance a contact orders on one day without any message, from the purchase model's
/// expected purchases over a horizon (`expected` purchases in `horizon_days`).
pub fn baseline_purchase_probability(expected: f64, horizon_days: f64) -> f64 {
    if expected.is_nan() || horizon_days.is_nan() || expected <= 0.0 || horizon_days <= 0.0 {
        return 0.0;
    }
    // Poisson: P(at least one purchase in a day) at the mean daily rate.
    1.0 - (-expected / horizon_days).exp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn orders(offer: Option<&OfferKind>) -> usize {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let m = ResponseModel::default();
        let who = Recipient {
            p_alive: 0.6,
            email_inactive: false,
            sms: false,
        };
        (0..40_000)
            .filter(|_| {
                respond(&m, who, offer, false, &mut rng)
                    .order_after_days
                    .is_some()
            })
            .count()
    }

    #[test]
    fn fixed_amounts_draw_about_twice_the_orders_of_percentages() {
        let fixed = orders(Some(&OfferKind::Fixed { amount_minor: 1000 }));
        let pct = orders(Some(&OfferKind::Percent { percent: 10 }));
        let ratio = fixed as f64 / pct as f64;
        assert!((1.7..2.3).contains(&ratio), "fixed {fixed} percent {pct}");
    }

    #[test]
    fn baseline_rate_matches_the_expectation() {
        let p = baseline_purchase_probability(0.9, 90.0);
        assert!((p - (1.0 - (-0.01f64).exp())).abs() < 1e-15);
        assert_eq!(baseline_purchase_probability(0.0, 90.0), 0.0);
    }
}
