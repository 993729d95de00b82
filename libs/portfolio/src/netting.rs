//! Netting the orders of several strategies (members) that share one account.
//!
//! At one decision time the orders of the members on one symbol are collected
//! as [`Contribution`]s. Compatible orders (market with market, limits at the
//! same limit price: one [`Key`]) form a [`Group`]; [`plan`] turns a group into
//! one net order of `|Σ buys − Σ sells|` on the net side and an internal cross
//! of `min(Σ buys, Σ sells)` between the members (no venue, no commission).
//! Fills of the net order are split back to the legs by [`allocate_fill`]
//! (quantity) and [`allocate_money`] (commission), both largest-remainder
//! splits that sum exactly; [`Execution`] keeps the running remainders and
//! returns per-fill [`Allocation`]s, [`internal_crosses`] the cross.
//!
//! Invariant: once the net order has filled completely, every member's
//! position has moved by exactly the signed sum of its own orders, as if each
//! order had gone to the venue alone. Everything here is pure integer and
//! `Decimal` arithmetic; docs/portfolio.md ("Netting") states the rules.

use grodt_core::{Decimal, Side};
use serde::{Deserialize, Serialize};

/// Errors of netting; each names the member, order, leg or value at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NettingError {
    /// The quantity step is zero or negative.
    #[error("quantity step must be positive, got {step_raw}")]
    InvalidStep {
        /// The step given (raw).
        step_raw: i64,
    },
    /// A group with no contribution was given to [`plan`].
    #[error("cannot plan an empty group")]
    EmptyGroup,
    /// A contribution's quantity is zero or negative.
    #[error("member {member} order {order}: quantity {qty_raw} is not positive")]
    NonPositiveQuantity {
        /// Member (strategy) index.
        member: usize,
        /// Order id.
        order: u64,
        /// The quantity (raw).
        qty_raw: i64,
    },
    /// A contribution's quantity is not a multiple of the step.
    #[error(
        "member {member} order {order}: quantity {qty_raw} is not a multiple of the step {step_raw}"
    )]
    OffStepQuantity {
        /// Member (strategy) index.
        member: usize,
        /// Order id.
        order: u64,
        /// The quantity (raw).
        qty_raw: i64,
        /// The step (raw).
        step_raw: i64,
    },
    /// A contribution in a group has another key than the group's first one.
    #[error(
        "member {member} order {order}: key {found:?} differs from the group's key {expected:?}"
    )]
    MixedKeys {
        /// Member (strategy) index.
        member: usize,
        /// Order id.
        order: u64,
        /// The group's key (its first contribution's).
        expected: Key,
        /// This contribution's key.
        found: Key,
    },
    /// The same (member, order) appears twice in a group: attribution would be ambiguous.
    #[error("member {member} order {order} appears more than once in the group")]
    DuplicateOrder {
        /// Member (strategy) index.
        member: usize,
        /// Order id.
        order: u64,
    },
    /// A remaining quantity given to [`allocate_fill`] is negative or off the step.
    #[error(
        "leg {leg}: remaining quantity {remaining_raw} is negative or not a multiple of the step {step_raw}"
    )]
    InvalidRemaining {
        /// Leg index (position in the slice).
        leg: usize,
        /// The remaining quantity (raw).
        remaining_raw: i64,
        /// The step (raw).
        step_raw: i64,
    },
    /// A fill quantity is negative or not a multiple of the step.
    #[error("fill quantity {fill_raw} is negative or not a multiple of the step {step_raw}")]
    InvalidFill {
        /// The fill quantity (raw).
        fill_raw: i64,
        /// The step (raw).
        step_raw: i64,
    },
    /// A fill is larger than what remains to be filled.
    #[error("fill quantity {fill_raw} exceeds the remaining quantity {remaining_raw}")]
    Overfill {
        /// The fill quantity (raw).
        fill_raw: i64,
        /// Total remaining over the legs (raw).
        remaining_raw: i128,
    },
    /// The remaining quantities do not match the plan's legs one for one.
    #[error("{remaining} remaining quantities for {legs} legs")]
    LegCountMismatch {
        /// Legs in the plan.
        legs: usize,
        /// Remaining quantities given.
        remaining: usize,
    },
    /// A weight given to [`allocate_money`] is negative.
    #[error("weight {index} is negative ({weight})")]
    NegativeWeight {
        /// Index of the weight.
        index: usize,
        /// The weight.
        weight: i64,
    },
    /// A non-zero amount was to be split over no weight or only zero weights.
    #[error("cannot split {total} over {count} weights that are all zero")]
    ZeroWeights {
        /// The amount to split.
        total: Decimal,
        /// Number of weights given.
        count: usize,
    },
    /// More decimal places were asked than `Decimal` holds (28).
    #[error("{dp} decimal places requested, at most 28 are representable")]
    TooManyDecimalPlaces {
        /// The decimal places requested.
        dp: u32,
    },
    /// An intermediate value does not fit (quantities beyond i64, money beyond Decimal).
    #[error("arithmetic overflow computing {what}")]
    Overflow {
        /// What was being computed.
        what: &'static str,
    },
}

/// What makes orders compatible for netting: market orders net with market
/// orders, limit orders with limit orders at the same price.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Key {
    /// Market orders.
    Market,
    /// Limit orders at this raw price (the instrument's price precision).
    Limit(i64),
}

/// One member's order on the symbol being netted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contribution {
    /// Member (strategy) index in the portfolio.
    pub member: usize,
    /// The member's order id.
    pub order: u64,
    /// Buy or sell.
    pub side: Side,
    /// Quantity (raw, > 0, a multiple of the step).
    pub qty_raw: i64,
    /// Compatibility key.
    pub key: Key,
}

/// Contributions sharing one [`Key`], in input order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The shared key.
    pub key: Key,
    /// The contributions with that key, in input order.
    pub contributions: Vec<Contribution>,
}

/// Splits contributions (all on one symbol: the caller groups per symbol) into
/// groups by key, groups in the order their key is first seen, contributions in
/// input order inside each group. Nothing is validated here; [`plan`] does.
pub fn group(contribs: &[Contribution]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for c in contribs {
        match groups.iter_mut().find(|g| g.key == c.key) {
            Some(g) => g.contributions.push(*c),
            None => groups.push(Group {
                key: c.key,
                contributions: vec![*c],
            }),
        }
    }
    groups
}

/// One contribution as netted: how much of it is crossed internally and how
/// much goes to the venue inside the net order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    /// Member (strategy) index.
    pub member: usize,
    /// The member's order id.
    pub order: u64,
    /// Side of the member's order.
    pub side: Side,
    /// The order's quantity (raw) = `crossed_raw + external_raw`.
    pub qty_raw: i64,
    /// Part crossed internally with the other side (raw, a step multiple).
    pub crossed_raw: i64,
    /// Part carried by the net order (raw, a step multiple; 0 on the non-net side).
    pub external_raw: i64,
}

/// The netting of one group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The group's key (the net order is a market order, or a limit at this price).
    pub key: Key,
    /// Side of the net order; `None` when buys and sells balance (no venue order).
    pub net_side: Option<Side>,
    /// Quantity of the net order `|Σ buys − Σ sells|` (raw).
    pub net_raw: i64,
    /// Quantity crossed internally `min(Σ buys, Σ sells)` (raw), on each side.
    pub crossed_raw: i64,
    /// One leg per contribution, in input order.
    pub legs: Vec<Leg>,
}

impl Plan {
    /// Each leg's quantity still to come from the net order before any fill
    /// (`external_raw`), in leg order: the starting `remaining` of [`allocate_fill`].
    pub fn external(&self) -> Vec<i64> {
        self.legs.iter().map(|l| l.external_raw).collect()
    }
}

/// Checks a step is positive.
fn check_step(step_raw: i64) -> Result<(), NettingError> {
    if step_raw <= 0 {
        return Err(NettingError::InvalidStep { step_raw });
    }
    Ok(())
}

/// Largest-remainder split of `total` units over `weights` (all >= 0, sum > 0):
/// share_i = floor(total * w_i / W), then the units left over go one each to
/// the largest remainders, ties to the earlier position. The shares sum to
/// `total`, and each differs from the exact `total * w_i / W` by less than one
/// unit, so `total <= W` keeps every share `<= w_i`.
fn largest_remainder(total: i128, weights: &[i128]) -> Result<Vec<i128>, NettingError> {
    let overflow = || NettingError::Overflow {
        what: "a pro rata share",
    };
    let sum = weights
        .iter()
        .try_fold(0_i128, |acc, w| acc.checked_add(*w))
        .ok_or_else(overflow)?;
    // total * w / W = q * w + r * w / W with total = q * W + r keeps the
    // products small (r < W) for totals far above the weights.
    let (q, r) = (total / sum, total % sum);
    let mut shares = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    let mut given = 0_i128;
    for w in weights {
        let rw = r.checked_mul(*w).ok_or_else(overflow)?;
        let share = q
            .checked_mul(*w)
            .and_then(|qw| qw.checked_add(rw / sum))
            .ok_or_else(overflow)?;
        given = given.checked_add(share).ok_or_else(overflow)?;
        shares.push(share);
        remainders.push(rw % sum);
    }
    let left = usize::try_from(total - given).map_err(|_| overflow())?;
    let mut order: Vec<usize> = (0..weights.len()).collect();
    // Stable sort: equal remainders keep input order, so ties go to the earlier leg.
    order.sort_by(|a, b| remainders[*b].cmp(&remainders[*a]));
    for i in order.into_iter().take(left) {
        shares[i] += 1;
    }
    Ok(shares)
}

/// Nets one group at quantity step `step_raw` (raw, > 0).
///
/// The net order is `|Σ buys − Σ sells|` on the larger side; `min(Σ buys, Σ sells)`
/// is crossed internally. Every leg on the smaller side is crossed whole; on
/// the larger side the crossed quantity is split pro rata to the legs'
/// quantities by largest remainder at the step (ties to the earlier leg), so the
/// crossed quantities of each side sum to `crossed_raw` and every leg has
/// `crossed_raw + external_raw = qty_raw`.
///
/// Errors: an empty group, a bad step, a quantity that is not positive or not
/// a step multiple, keys that differ from the first contribution's, the same
/// (member, order) twice, or sums beyond `i64`.
pub fn plan(group: &[Contribution], step_raw: i64) -> Result<Plan, NettingError> {
    check_step(step_raw)?;
    let first = group.first().ok_or(NettingError::EmptyGroup)?;
    let (mut buys, mut sells) = (0_i128, 0_i128);
    for (i, c) in group.iter().enumerate() {
        if c.qty_raw <= 0 {
            return Err(NettingError::NonPositiveQuantity {
                member: c.member,
                order: c.order,
                qty_raw: c.qty_raw,
            });
        }
        if c.qty_raw % step_raw != 0 {
            return Err(NettingError::OffStepQuantity {
                member: c.member,
                order: c.order,
                qty_raw: c.qty_raw,
                step_raw,
            });
        }
        if c.key != first.key {
            return Err(NettingError::MixedKeys {
                member: c.member,
                order: c.order,
                expected: first.key,
                found: c.key,
            });
        }
        if group[..i]
            .iter()
            .any(|o| o.member == c.member && o.order == c.order)
        {
            return Err(NettingError::DuplicateOrder {
                member: c.member,
                order: c.order,
            });
        }
        match c.side {
            Side::Buy => buys += i128::from(c.qty_raw),
            Side::Sell => sells += i128::from(c.qty_raw),
        }
    }
    let too_big = || NettingError::Overflow {
        what: "the side totals of the group",
    };
    let crossed_raw = i64::try_from(buys.min(sells)).map_err(|_| too_big())?;
    let net_raw = i64::try_from((buys - sells).abs()).map_err(|_| too_big())?;
    let net_side = match buys.cmp(&sells) {
        std::cmp::Ordering::Greater => Some(Side::Buy),
        std::cmp::Ordering::Less => Some(Side::Sell),
        std::cmp::Ordering::Equal => None,
    };
    // Pro rata on the net side, in step units; with no net side every leg is
    // crossed whole, which is what the "smaller side" branch below does.
    let crossed_units: Vec<i128> = match net_side {
        Some(side) => {
            let weights: Vec<i128> = group
                .iter()
                .filter(|c| c.side == side)
                .map(|c| i128::from(c.qty_raw / step_raw))
                .collect();
            largest_remainder(i128::from(crossed_raw / step_raw), &weights)?
        }
        None => Vec::new(),
    };
    let mut net_shares = crossed_units.into_iter();
    let mut legs = Vec::with_capacity(group.len());
    for c in group {
        let crossed = if Some(c.side) == net_side {
            let units = net_shares.next().unwrap_or(0);
            // units <= qty / step, so the product fits in i64.
            i64::try_from(units).map_err(|_| too_big())? * step_raw
        } else {
            c.qty_raw
        };
        legs.push(Leg {
            member: c.member,
            order: c.order,
            side: c.side,
            qty_raw: c.qty_raw,
            crossed_raw: crossed,
            external_raw: c.qty_raw - crossed,
        });
    }
    Ok(Plan {
        key: first.key,
        net_side,
        net_raw,
        crossed_raw,
        legs,
    })
}

/// Splits a fill of the net order (possibly partial) over the legs' remaining
/// external quantities, pro rata by largest remainder at the step (ties to the
/// earlier leg).
///
/// The shares sum to `fill_raw` exactly, are step multiples, and each is at most
/// its leg's remaining quantity (so a sequence of fills summing to the net
/// quantity fills every leg exactly). A fill of 0 gives all zeros.
///
/// Errors: a bad step; a remaining quantity negative or off the step; a fill
/// negative, off the step, or above the total remaining.
pub fn allocate_fill(
    remaining: &[i64],
    fill_raw: i64,
    step_raw: i64,
) -> Result<Vec<i64>, NettingError> {
    check_step(step_raw)?;
    let mut weights = Vec::with_capacity(remaining.len());
    for (leg, r) in remaining.iter().enumerate() {
        if *r < 0 || *r % step_raw != 0 {
            return Err(NettingError::InvalidRemaining {
                leg,
                remaining_raw: *r,
                step_raw,
            });
        }
        weights.push(i128::from(*r / step_raw));
    }
    if fill_raw < 0 || fill_raw % step_raw != 0 {
        return Err(NettingError::InvalidFill { fill_raw, step_raw });
    }
    let total_remaining: i128 = remaining.iter().map(|r| i128::from(*r)).sum();
    if i128::from(fill_raw) > total_remaining {
        return Err(NettingError::Overfill {
            fill_raw,
            remaining_raw: total_remaining,
        });
    }
    if fill_raw == 0 {
        return Ok(vec![0; remaining.len()]);
    }
    largest_remainder(i128::from(fill_raw / step_raw), &weights)?
        .into_iter()
        .map(|units| {
            // units <= remaining / step: fits back in i64.
            i64::try_from(units)
                .map(|u| u * step_raw)
                .map_err(|_| NettingError::Overflow {
                    what: "a fill share",
                })
        })
        .collect()
}

/// Splits an amount of money (a commission, rebate or slippage cost; either
/// sign) pro rata to `weights` at `dp` decimal places by largest remainder
/// (ties to the earlier weight); zero weights get zero.
///
/// When `total` has at most `dp` decimal places the shares sum to it exactly
/// and each has at most `dp` places. When it has more, the whole units of
/// `10^-dp` are split that way and the residue below one unit goes to the
/// largest weight (the first of equal largest ones), so the sum is still exact
/// but that one share carries more than `dp` places. A negative total is split
/// as its absolute value, then negated (rounding is symmetric).
///
/// Errors: a negative weight; a non-zero total with no weight or only zero
/// weights (a zero total then gives all zeros); `dp > 28`; overflow.
pub fn allocate_money(
    total: Decimal,
    weights: &[i64],
    dp: u32,
) -> Result<Vec<Decimal>, NettingError> {
    if dp > 28 {
        return Err(NettingError::TooManyDecimalPlaces { dp });
    }
    for (index, w) in weights.iter().enumerate() {
        if *w < 0 {
            return Err(NettingError::NegativeWeight { index, weight: *w });
        }
    }
    if weights.iter().all(|w| *w == 0) {
        if total.is_zero() {
            return Ok(vec![Decimal::ZERO; weights.len()]);
        }
        return Err(NettingError::ZeroWeights {
            total,
            count: weights.len(),
        });
    }
    let overflow = || NettingError::Overflow {
        what: "a money split",
    };
    let magnitude = total.abs();
    let unit = Decimal::new(1, dp);
    let units_dec = magnitude.checked_div(unit).ok_or_else(overflow)?.trunc();
    // Decimal's mantissa is below 2^96, so whole units always fit in i128.
    let units = units_dec.mantissa() / 10_i128.pow(units_dec.scale());
    let residue = magnitude - units_dec.checked_mul(unit).ok_or_else(overflow)?;
    let shares = largest_remainder(
        units,
        &weights.iter().map(|w| i128::from(*w)).collect::<Vec<_>>(),
    )?;
    let mut out = Vec::with_capacity(shares.len());
    for s in shares {
        let m = i64::try_from(s).map_err(|_| overflow())?;
        out.push(Decimal::try_new(m, dp).map_err(|_| overflow())?);
    }
    if !residue.is_zero() {
        // max_by_key keeps the last maximum; reverse so the first one wins.
        let largest = weights
            .iter()
            .enumerate()
            .rev()
            .max_by_key(|(_, w)| **w)
            .map_or(0, |(i, _)| i);
        out[largest] += residue;
    }
    if total.is_sign_negative() {
        for v in &mut out {
            *v = -*v;
        }
    }
    Ok(out)
}

/// Commission of the orders sent alone versus netted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Savings {
    /// Σ over legs of the commission of each order sent alone.
    pub gross_commission: Decimal,
    /// Commission of the net order (zero when there is no net order).
    pub net_commission: Decimal,
}

impl Savings {
    /// `gross_commission − net_commission` (negative if netting cost more).
    pub fn saved(&self) -> Decimal {
        self.gross_commission - self.net_commission
    }
}

/// Commission saved by netting, at one price: `commission(qty_raw, price_raw)`
/// of every leg alone summed, against `commission(net_raw, price_raw)` of the
/// net order (zero when buys and sells balance: nothing goes to the venue).
/// Internal crosses pay no commission. The commission function is the caller's
/// (e.g. a grodt-sim `CommissionModel` evaluated on one fill).
pub fn savings(plan: &Plan, price_raw: i64, commission: impl Fn(i64, i64) -> Decimal) -> Savings {
    let gross_commission = plan
        .legs
        .iter()
        .map(|l| commission(l.qty_raw, price_raw))
        .sum();
    let net_commission = if plan.net_raw > 0 {
        commission(plan.net_raw, price_raw)
    } else {
        Decimal::ZERO
    };
    Savings {
        gross_commission,
        net_commission,
    }
}

/// What one member's order received from one venue fill or from the internal cross.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Member (strategy) index.
    pub member: usize,
    /// The member's order id.
    pub order: u64,
    /// Quantity received (raw, > 0), on the order's own side.
    pub qty_raw: i64,
    /// The member's share of the fill's commission (zero for an internal cross).
    pub commission: Decimal,
    /// The venue fill's sequence number; `None` for the internal cross.
    pub fill_seq: Option<u64>,
}

/// The internal cross of a plan: one [`Allocation`] per leg with a crossed
/// quantity, in leg order, commission zero, `fill_seq: None`.
pub fn internal_crosses(plan: &Plan) -> Vec<Allocation> {
    plan.legs
        .iter()
        .filter(|l| l.crossed_raw > 0)
        .map(|l| Allocation {
            member: l.member,
            order: l.order,
            qty_raw: l.crossed_raw,
            commission: Decimal::ZERO,
            fill_seq: None,
        })
        .collect()
}

/// Attributes one venue fill of the net order: the quantity is split over
/// `remaining` (each leg's external quantity not yet filled, in leg order) by
/// [`allocate_fill`], the commission over the allocated quantities by
/// [`allocate_money`] at `dp` places. Returns one [`Allocation`] per leg that
/// received quantity, in leg order, and the new remaining quantities.
///
/// Errors: those of [`allocate_fill`] and [`allocate_money`] (a non-zero
/// commission on a zero fill is `ZeroWeights`), and `LegCountMismatch`.
pub fn attribute_fill(
    plan: &Plan,
    remaining: &[i64],
    fill_seq: u64,
    fill_raw: i64,
    commission: Decimal,
    step_raw: i64,
    dp: u32,
) -> Result<(Vec<Allocation>, Vec<i64>), NettingError> {
    if remaining.len() != plan.legs.len() {
        return Err(NettingError::LegCountMismatch {
            legs: plan.legs.len(),
            remaining: remaining.len(),
        });
    }
    let qty = allocate_fill(remaining, fill_raw, step_raw)?;
    let money = allocate_money(commission, &qty, dp)?;
    let allocations = plan
        .legs
        .iter()
        .zip(qty.iter().zip(money))
        .filter(|(_, (q, _))| **q > 0)
        .map(|(l, (q, c))| Allocation {
            member: l.member,
            order: l.order,
            qty_raw: *q,
            commission: c,
            fill_seq: Some(fill_seq),
        })
        .collect();
    let left = remaining.iter().zip(&qty).map(|(r, q)| r - q).collect();
    Ok((allocations, left))
}

/// A plan being executed: keeps each leg's external quantity not yet filled
/// and attributes fills one at a time ([`attribute_fill`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    plan: Plan,
    remaining: Vec<i64>,
    step_raw: i64,
    dp: u32,
}

impl Execution {
    /// Starts executing `plan` at quantity step `step_raw`, commissions split
    /// at `dp` decimal places.
    pub fn new(plan: Plan, step_raw: i64, dp: u32) -> Result<Self, NettingError> {
        check_step(step_raw)?;
        if dp > 28 {
            return Err(NettingError::TooManyDecimalPlaces { dp });
        }
        let remaining = plan.external();
        Ok(Self {
            plan,
            remaining,
            step_raw,
            dp,
        })
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Each leg's external quantity not yet filled, in leg order.
    pub fn remaining(&self) -> &[i64] {
        &self.remaining
    }

    /// True once the net order has filled completely.
    pub fn is_complete(&self) -> bool {
        self.remaining.iter().all(|r| *r == 0)
    }

    /// Attributes one fill of the net order; on error nothing changes.
    pub fn on_fill(
        &mut self,
        fill_seq: u64,
        fill_raw: i64,
        commission: Decimal,
    ) -> Result<Vec<Allocation>, NettingError> {
        let (allocations, left) = attribute_fill(
            &self.plan,
            &self.remaining,
            fill_seq,
            fill_raw,
            commission,
            self.step_raw,
            self.dp,
        )?;
        self.remaining = left;
        Ok(allocations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grodt_core::{Liquidity, Price, Quantity};
    use grodt_sim::models::{
        CommissionInput, CommissionModel, MakerTaker, PerShare, PerShareCapped, Percentage,
        PercentageWithMinimum, TieredMonthly,
    };
    use proptest::prelude::*;
    use rust_decimal_macros::dec;
    use std::collections::BTreeMap;

    fn c(member: usize, side: Side, qty_raw: i64) -> Contribution {
        Contribution {
            member,
            order: member as u64 * 10,
            side,
            qty_raw,
            key: Key::Market,
        }
    }

    #[test]
    fn hand_example_nets_and_splits_the_cross_pro_rata() {
        let group = [
            c(0, Side::Buy, 100),
            c(1, Side::Sell, 60),
            c(2, Side::Buy, 50),
        ];
        let p = plan(&group, 1).unwrap();
        assert_eq!(p.net_side, Some(Side::Buy));
        assert_eq!(p.net_raw, 90);
        assert_eq!(p.crossed_raw, 60);
        let crossed: Vec<i64> = p.legs.iter().map(|l| l.crossed_raw).collect();
        let external: Vec<i64> = p.legs.iter().map(|l| l.external_raw).collect();
        assert_eq!(crossed, [40, 60, 20]);
        assert_eq!(external, [60, 0, 30]);
        // A partial fill of 45 out of 90: half of each remaining.
        assert_eq!(allocate_fill(&p.external(), 45, 1).unwrap(), [30, 0, 15]);
    }

    #[test]
    fn odd_remainders_at_step_one_go_to_the_largest_remainder_then_the_first() {
        // Buys 1, 1, 1 against a sell of 2: 2/3 each -> floors 0, remainders equal
        // -> the first two legs get one each.
        let group = [
            c(0, Side::Buy, 1),
            c(1, Side::Buy, 1),
            c(2, Side::Buy, 1),
            c(3, Side::Sell, 2),
        ];
        let p = plan(&group, 1).unwrap();
        assert_eq!(p.net_raw, 1);
        let crossed: Vec<i64> = p.legs.iter().map(|l| l.crossed_raw).collect();
        assert_eq!(crossed, [1, 1, 0, 2]);
        // 7 over [5, 3, 2]: exact 3.5, 2.1, 1.4 -> floors 3, 2, 1; one left goes
        // to the largest remainder (0.5, leg 0).
        assert_eq!(allocate_fill(&[5, 3, 2], 7, 1).unwrap(), [4, 2, 1]);
        // 5 over [3, 3, 4]: exact 1.5, 1.5, 2.0 -> one left, tie -> leg 0.
        assert_eq!(allocate_fill(&[3, 3, 4], 5, 1).unwrap(), [2, 1, 2]);
    }

    #[test]
    fn odd_remainders_at_step_ten_stay_on_the_step() {
        // Buys 30 and 40 against a sell of 50 (step 10): 3 and 4 units share 5:
        // exact 15/7 = 2.14.., 20/7 = 2.86.. -> floors 2, 2, remainders 1/7, 6/7
        // -> the second leg gets the last unit.
        let group = [
            c(0, Side::Buy, 30),
            c(1, Side::Buy, 40),
            c(2, Side::Sell, 50),
        ];
        let p = plan(&group, 10).unwrap();
        assert_eq!(
            (p.net_side, p.net_raw, p.crossed_raw),
            (Some(Side::Buy), 20, 50)
        );
        let crossed: Vec<i64> = p.legs.iter().map(|l| l.crossed_raw).collect();
        assert_eq!(crossed, [20, 30, 50]);
        assert_eq!(p.external(), [10, 10, 0]);
        // A fill of 10 over remaining [10, 10, 0]: a tie, the first leg takes it.
        assert_eq!(allocate_fill(&p.external(), 10, 10).unwrap(), [10, 0, 0]);
        assert_eq!(
            allocate_fill(&[10, 10], 15, 10),
            Err(NettingError::InvalidFill {
                fill_raw: 15,
                step_raw: 10
            })
        );
    }

    #[test]
    fn balanced_group_has_no_net_order_and_everything_crosses() {
        let group = [
            c(0, Side::Buy, 70),
            c(1, Side::Sell, 30),
            c(2, Side::Sell, 40),
        ];
        let p = plan(&group, 1).unwrap();
        assert_eq!((p.net_side, p.net_raw, p.crossed_raw), (None, 0, 70));
        assert!(p.legs.iter().all(|l| l.crossed_raw == l.qty_raw));
        let x = internal_crosses(&p);
        assert_eq!(x.len(), 3);
        assert!(
            x.iter()
                .all(|a| a.fill_seq.is_none() && a.commission.is_zero())
        );
    }

    #[test]
    fn money_split_is_exact_and_deterministic() {
        assert_eq!(
            allocate_money(dec!(0.10), &[1, 1, 1], 2).unwrap(),
            [dec!(0.04), dec!(0.03), dec!(0.03)]
        );
        // Negative totals round symmetrically.
        assert_eq!(
            allocate_money(dec!(-0.10), &[1, 1, 1], 2).unwrap(),
            [dec!(-0.04), dec!(-0.03), dec!(-0.03)]
        );
        // Zero weights get zero.
        assert_eq!(
            allocate_money(dec!(1.00), &[0, 3, 1], 2).unwrap(),
            [dec!(0), dec!(0.75), dec!(0.25)]
        );
        // More places than dp: units split, the residue goes to the largest weight.
        let s = allocate_money(dec!(0.105), &[1, 2, 2], 2).unwrap();
        assert_eq!(s, [dec!(0.02), dec!(0.045), dec!(0.04)]);
        assert_eq!(s.iter().sum::<Decimal>(), dec!(0.105));
        assert_eq!(
            allocate_money(dec!(1), &[0, 0], 2),
            Err(NettingError::ZeroWeights {
                total: dec!(1),
                count: 2
            })
        );
        assert_eq!(
            allocate_money(Decimal::ZERO, &[0, 0], 2).unwrap(),
            [Decimal::ZERO; 2]
        );
        assert_eq!(
            allocate_money(dec!(1), &[1, -1], 2),
            Err(NettingError::NegativeWeight {
                index: 1,
                weight: -1
            })
        );
    }

    #[test]
    fn errors_name_the_member_and_order() {
        let mut bad = c(1, Side::Buy, 15);
        assert_eq!(
            plan(&[c(0, Side::Sell, 10), bad], 10),
            Err(NettingError::OffStepQuantity {
                member: 1,
                order: 10,
                qty_raw: 15,
                step_raw: 10
            })
        );
        bad.qty_raw = 0;
        assert_eq!(
            plan(&[bad], 1),
            Err(NettingError::NonPositiveQuantity {
                member: 1,
                order: 10,
                qty_raw: 0
            })
        );
        let mut lim = c(2, Side::Buy, 10);
        lim.key = Key::Limit(10_000);
        assert_eq!(
            plan(&[c(0, Side::Sell, 10), lim], 1),
            Err(NettingError::MixedKeys {
                member: 2,
                order: 20,
                expected: Key::Market,
                found: Key::Limit(10_000)
            })
        );
        assert_eq!(
            plan(&[c(0, Side::Sell, 10), c(0, Side::Buy, 10)], 1),
            Err(NettingError::DuplicateOrder {
                member: 0,
                order: 0
            })
        );
        assert_eq!(plan(&[], 1), Err(NettingError::EmptyGroup));
        assert_eq!(
            plan(&[c(0, Side::Buy, 1)], 0),
            Err(NettingError::InvalidStep { step_raw: 0 })
        );
        assert_eq!(
            allocate_fill(&[10, 20], 40, 1),
            Err(NettingError::Overfill {
                fill_raw: 40,
                remaining_raw: 30
            })
        );
        assert_eq!(
            allocate_fill(&[10, -1], 4, 1),
            Err(NettingError::InvalidRemaining {
                leg: 1,
                remaining_raw: -1,
                step_raw: 1
            })
        );
        assert!(
            plan(&[c(0, Side::Buy, 10)], 1)
                .unwrap()
                .legs
                .iter()
                .all(|l| l.external_raw == 10)
        );
        let msg = NettingError::OffStepQuantity {
            member: 3,
            order: 7,
            qty_raw: 5,
            step_raw: 10,
        }
        .to_string();
        assert!(msg.contains("member 3 order 7"), "{msg}");
    }

    #[test]
    fn group_keeps_first_seen_key_order() {
        let mut a = c(0, Side::Buy, 10);
        a.key = Key::Limit(100);
        let b = c(1, Side::Sell, 10);
        let mut d = c(2, Side::Sell, 5);
        d.key = Key::Limit(100);
        let mut e = c(3, Side::Buy, 5);
        e.key = Key::Limit(101);
        let g = group(&[a, b, d, e]);
        let keys: Vec<Key> = g.iter().map(|g| g.key).collect();
        assert_eq!(keys, [Key::Limit(100), Key::Market, Key::Limit(101)]);
        assert_eq!(g[0].contributions, [a, d]);
        assert!(group(&[]).is_empty());
    }

    #[test]
    fn execution_attributes_fills_and_commission() {
        let group = [
            c(0, Side::Buy, 100),
            c(1, Side::Sell, 60),
            c(2, Side::Buy, 50),
        ];
        let mut ex = Execution::new(plan(&group, 1).unwrap(), 1, 2).unwrap();
        let first = ex.on_fill(1, 45, dec!(1.00)).unwrap();
        assert_eq!(
            first,
            [
                Allocation {
                    member: 0,
                    order: 0,
                    qty_raw: 30,
                    commission: dec!(0.67),
                    fill_seq: Some(1)
                },
                Allocation {
                    member: 2,
                    order: 20,
                    qty_raw: 15,
                    commission: dec!(0.33),
                    fill_seq: Some(1)
                },
            ]
        );
        assert_eq!(ex.remaining(), [30, 0, 15]);
        assert!(ex.on_fill(2, 50, dec!(1)).is_err());
        assert_eq!(ex.remaining(), [30, 0, 15], "a failed fill changes nothing");
        ex.on_fill(2, 45, dec!(1)).unwrap();
        assert!(ex.is_complete());
        let x = internal_crosses(ex.plan());
        let q: Vec<(usize, i64)> = x.iter().map(|a| (a.member, a.qty_raw)).collect();
        assert_eq!(q, [(0, 40), (1, 60), (2, 20)]);
    }

    #[test]
    fn savings_compares_legs_alone_with_the_net_order() {
        let group = [
            c(0, Side::Buy, 100),
            c(1, Side::Sell, 60),
            c(2, Side::Buy, 50),
        ];
        let p = plan(&group, 1).unwrap();
        // 0.01 per share, minimum 1.00: legs 1.00 + 1.00 + 1.00, net 90 -> 1.00.
        let fee = |q: i64, _| (Decimal::from(q) * dec!(0.01)).max(dec!(1));
        let s = savings(&p, 10_000, fee);
        assert_eq!(s.gross_commission, dec!(3.00));
        assert_eq!(s.net_commission, dec!(1));
        assert_eq!(s.saved(), dec!(2.00));
    }

    /// Qty at precision 0 and price at precision 2, as a grodt-sim fill.
    fn sim_input(qty_raw: i64, price_raw: i64, liquidity: Liquidity, ts: i64) -> CommissionInput {
        let qty = Quantity::from_raw(qty_raw, 0).unwrap();
        let price = Price::from_raw(price_raw, 2).unwrap();
        CommissionInput {
            side: Side::Buy,
            qty,
            price,
            notional: qty.to_decimal() * price.to_decimal(),
            liquidity,
            ts,
        }
    }

    /// The sim's commission of one fill alone (a fresh model: the stateless ones
    /// do not depend on history), net of any rebate.
    fn sim_fee<M: CommissionModel + Copy>(
        model: M,
        liquidity: Liquidity,
    ) -> impl Fn(i64, i64) -> Decimal {
        move |q, p| {
            let mut m = model;
            let charge = m.charge(&sim_input(q, p, liquidity, 0));
            charge.fee - charge.rebate
        }
    }

    #[test]
    fn monthly_tiers_can_make_netting_cost_more() {
        // The documented exception: volume tiers charge a whole fill at the tier
        // reached before it, so trading less now can keep a later fill in the
        // dearer tier. Tier: 0.01/share below 100 shares this month, free above.
        let tiers = vec![(dec!(0), dec!(0.01)), (dec!(100), dec!(0))];
        let month = |fills: &[i64]| {
            let mut m = TieredMonthly::new(tiers.clone(), Decimal::ZERO);
            fills
                .iter()
                .map(|q| m.charge(&sim_input(*q, 10_000, Liquidity::Taker, 0)).fee)
                .sum::<Decimal>()
        };
        // Alone: sell 1 and buy 100 (0.01 + 1.00), then a later 1000 in the free
        // tier. Netted: one buy of 99 (0.99), then the 1000 still at 0.01 (10.00).
        assert_eq!(month(&[1, 100, 1000]), dec!(1.01));
        assert_eq!(month(&[99, 1000]), dec!(10.99));
    }

    #[test]
    fn maker_rebates_shrink_when_netted() {
        // The other documented exception: a maker rebate is a negative cost per
        // unit traded, so trading less at the venue receives less of it.
        let group = [c(0, Side::Buy, 100), c(1, Side::Sell, 60)];
        let p = plan(&group, 1).unwrap();
        let maker = MakerTaker {
            maker: dec!(-0.0002),
            taker: dec!(0.0003),
        };
        let s = savings(&p, 10_000, sim_fee(maker, Liquidity::Maker));
        // Alone: -(10,000 + 6,000) x 0.0002 = -3.20; netted: -4,000 x 0.0002 = -0.80.
        assert_eq!(s.gross_commission, dec!(-3.2));
        assert_eq!(s.net_commission, dec!(-0.8));
        assert!(s.saved() < Decimal::ZERO);
    }

    fn side() -> impl Strategy<Value = Side> {
        prop_oneof![Just(Side::Buy), Just(Side::Sell)]
    }

    /// Up to 8 contributions of 1..=500 steps on one key, members 0..4 (a member
    /// may have several orders), order ids unique.
    fn contributions() -> impl Strategy<Value = (i64, Vec<Contribution>)> {
        (
            prop_oneof![Just(1_i64), Just(10), Just(100)],
            prop::collection::vec((0_usize..4, side(), 1_i64..=500), 1..=8),
        )
            .prop_map(|(step, raw)| {
                let contribs = raw
                    .into_iter()
                    .enumerate()
                    .map(|(i, (member, side, units))| Contribution {
                        member,
                        order: i as u64,
                        side,
                        qty_raw: units * step,
                        key: Key::Limit(12_345),
                    })
                    .collect();
                (step, contribs)
            })
    }

    proptest! {
        #[test]
        fn netting_never_changes_a_resulting_position(
            (step, group) in contributions(),
            cuts in prop::collection::vec(1_u64..=1_000, 1..=6),
            fees in prop::collection::vec(0_i64..=10_000, 6),
        ) {
            let p = plan(&group, step).unwrap();
            let (mut buys, mut sells) = (0_i64, 0_i64);
            for l in &p.legs {
                prop_assert_eq!(l.crossed_raw + l.external_raw, l.qty_raw);
                prop_assert!(l.crossed_raw >= 0 && l.external_raw >= 0);
                prop_assert_eq!(l.crossed_raw % step, 0);
                if Some(l.side) != p.net_side {
                    prop_assert_eq!(l.external_raw, 0, "the non-net side crosses whole");
                }
                match l.side {
                    Side::Buy => buys += l.crossed_raw,
                    Side::Sell => sells += l.crossed_raw,
                }
            }
            prop_assert_eq!(buys, p.crossed_raw);
            prop_assert_eq!(sells, p.crossed_raw);
            prop_assert_eq!(p.legs.iter().map(|l| l.external_raw).sum::<i64>(), p.net_raw);

            // Partial fills summing to the net quantity: each cut takes a share
            // of what is left (at least one step), the last takes the rest.
            let mut ex = Execution::new(p.clone(), step, 2).unwrap();
            let mut allocations = internal_crosses(&p);
            let mut left = p.net_raw;
            for (seq, cut) in cuts.iter().enumerate() {
                if left == 0 {
                    break;
                }
                let units = left / step;
                let take = if seq + 1 == cuts.len() {
                    left
                } else {
                    step * (1 + (units - 1) * i64::try_from(*cut).unwrap() / 1_000)
                };
                let fee = Decimal::new(fees[seq], 2);
                let got = ex.on_fill(seq as u64, take, fee).unwrap();
                prop_assert_eq!(got.iter().map(|a| a.qty_raw).sum::<i64>(), take);
                prop_assert_eq!(got.iter().map(|a| a.commission).sum::<Decimal>(), fee);
                allocations.extend(got);
                left -= take;
            }
            prop_assert!(ex.is_complete());

            let side_of: BTreeMap<(usize, u64), Side> =
                p.legs.iter().map(|l| ((l.member, l.order), l.side)).collect();
            let mut got: BTreeMap<usize, i64> = BTreeMap::new();
            for a in &allocations {
                *got.entry(a.member).or_default() += side_of[&(a.member, a.order)].sign() * a.qty_raw;
            }
            let mut want: BTreeMap<usize, i64> = BTreeMap::new();
            for c in &group {
                *want.entry(c.member).or_default() += c.side.sign() * c.qty_raw;
            }
            want.retain(|_, v| *v != 0);
            got.retain(|_, v| *v != 0);
            prop_assert_eq!(got, want);
            // Per order too: every order received exactly its quantity.
            for c in &group {
                let received: i64 = allocations
                    .iter()
                    .filter(|a| (a.member, a.order) == (c.member, c.order))
                    .map(|a| a.qty_raw)
                    .sum();
                prop_assert_eq!(received, c.qty_raw);
            }
        }

        #[test]
        fn fill_allocations_sum_exactly_and_stay_within_remaining(
            step in prop_oneof![Just(1_i64), Just(10), Just(1_000)],
            units in prop::collection::vec(0_i64..=10_000, 1..=10),
            frac in 0_i64..=1_000,
        ) {
            let remaining: Vec<i64> = units.iter().map(|u| u * step).collect();
            let total_units: i64 = units.iter().sum();
            let fill = step * (total_units * frac / 1_000);
            let shares = allocate_fill(&remaining, fill, step).unwrap();
            prop_assert_eq!(shares.iter().sum::<i64>(), fill);
            for (s, r) in shares.iter().zip(&remaining) {
                prop_assert_eq!(s % step, 0);
                prop_assert!(*s >= 0 && s <= r);
                // Within one step of the exact pro rata share.
                if total_units > 0 {
                    let exact = i128::from(fill) * i128::from(*r);
                    let got = i128::from(*s) * i128::from(total_units * step);
                    prop_assert!((got - exact).abs() < i128::from(step) * i128::from(total_units * step));
                }
            }
        }

        #[test]
        fn money_splits_sum_exactly(
            mantissa in -10_000_000_i64..=10_000_000,
            scale in 0_u32..=6,
            dp in 0_u32..=6,
            weights in prop::collection::vec(0_i64..=1_000_000, 1..=10),
        ) {
            prop_assume!(weights.iter().any(|w| *w > 0));
            let total = Decimal::new(mantissa, scale);
            let shares = allocate_money(total, &weights, dp).unwrap();
            prop_assert_eq!(shares.iter().sum::<Decimal>(), total);
            for (s, w) in shares.iter().zip(&weights) {
                if *w == 0 {
                    prop_assert!(s.is_zero());
                }
                if scale <= dp {
                    prop_assert!(s.normalize().scale() <= dp);
                }
                prop_assert!(total.is_zero() || s.is_zero() || s.is_sign_negative() == total.is_sign_negative());
            }
        }

        #[test]
        fn netting_never_raises_commission_under_the_sim_models(
            (step, group) in contributions(),
            price_raw in 1_i64..=1_000_000,
            rate_bps in 0_i64..=100,
            per_share_mils in 0_i64..=1_000,
            minimum_cents in 0_i64..=500,
            cap_bps in 1_i64..=200,
        ) {
            let p = plan(&group, step).unwrap();
            let rate = Decimal::new(rate_bps, 4);
            let per_share = Decimal::new(per_share_mils, 4);
            let minimum = Decimal::new(minimum_cents, 2);
            let taker = Liquidity::Taker;
            let results = [
                savings(&p, price_raw, sim_fee(PerShare { rate: per_share, minimum }, taker)),
                savings(&p, price_raw, sim_fee(Percentage { rate }, taker)),
                savings(&p, price_raw, sim_fee(PercentageWithMinimum { rate, minimum }, taker)),
                savings(&p, price_raw, sim_fee(PerShareCapped {
                    rate: per_share,
                    minimum,
                    maximum_fraction: Decimal::new(cap_bps, 4),
                }, taker)),
                savings(&p, price_raw, sim_fee(MakerTaker { maker: Decimal::ZERO, taker: rate }, taker)),
            ];
            for s in results {
                prop_assert!(s.net_commission <= s.gross_commission, "{:?}", s);
            }
        }
    }
}
