//! The fleet's ledger of pending usage on Redis: the same accounts as the in-process ledger
//! (`client::ledger`), one per customer and quota feature, shared by every instance, so the
//! fleet counts what each instance let through as one app does.
//!
//! The engine's rules stay in Rust. A check reads the pending units (`DECIDE` without a hold),
//! decides, and sends with its hold the most pending units its answer still allows for each
//! feature; the script takes the hold only if the fleet's pending units are within that, in
//! the same step as it reads them. The rules only allow less as more is pending, so a hold
//! the script takes is one the check allowed; when another instance took units in between,
//! the script answers the new figures and the check decides again.
//!
//! An account is four keys under `<namespace>:ledger:<customer, feature>`: a hash (`high`, the
//! highest platform figure seen, the floor until `high_at` plus the metering lag; `pending`,
//! the units held and reported), the holds by expiry
//! (`:h`), reported events by the time they were reported (`:r`; their metering lag starts
//! then: on the fleet's stream, an event is as good as accepted), and each entry's units
//! (`:u`). Every key a script writes gets the account's lifetime again, so the account of a
//! customer nobody checks leaves Redis by itself, and the holds of a dead instance stop
//! counting at their expiry. Times are Redis's own clock.
//! Scripts name keys derived from the account's, so the tier needs one Redis server (not a
//! cluster), as its cache does.

use std::sync::LazyLock;
use std::time::Duration;

use super::RedisTier;
use crate::client::keys;

/// Shared by the scripts: the time, and the operations on an account's entries.
/// `ARGV[1]` is always the accounts' lifetime (ms), `ARGV[2]` the metering lag (ms).
const PRELUDE: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local keep, lag = tonumber(ARGV[1]), tonumber(ARGV[2])
local function fmt(x) return string.format('%.17g', x) end
local function add(base, by)
  local pending = tonumber(redis.call('HINCRBYFLOAT', base, 'pending', fmt(by)))
  -- With no entry left the sum is zero, so rounding never outlives the entries.
  if by < 0 and pending < 1e-6 and redis.call('ZCARD', base .. ':h') + redis.call('ZCARD', base .. ':r') == 0 then
    redis.call('HSET', base, 'pending', '0')
  end
end
local function drop_hold(base, id)
  local units = redis.call('HGET', base .. ':u', 'h' .. id)
  redis.call('ZREM', base .. ':h', id)
  if units then
    redis.call('HDEL', base .. ':u', 'h' .. id)
    add(base, -tonumber(units))
  end
end
local function drop_reported(base, key)
  local units = redis.call('HGET', base .. ':u', 'e' .. key)
  redis.call('ZREM', base .. ':r', key)
  if units then
    redis.call('HDEL', base .. ':u', 'e' .. key)
    add(base, -tonumber(units))
  end
end
-- Drops entries of one kind (`set` ':h' or ':r', fields `prefix` 'h' or 'e') in one call
-- per command, whatever their number.
local function drop_many(base, set, prefix, members)
  if #members == 0 then return end
  local fields = {}
  for i, member in ipairs(members) do fields[i] = prefix .. member end
  local units = redis.call('HMGET', base .. ':u', unpack(fields))
  local total = 0
  for _, each in ipairs(units) do total = total + (tonumber(each) or 0) end
  redis.call('ZREM', base .. set, unpack(members))
  redis.call('HDEL', base .. ':u', unpack(fields))
  add(base, -total)
end
-- Drops the entries of `set` scored up to `score`, a bounded batch at a time.
local function expire(base, set, prefix, score)
  repeat
    local due = redis.call('ZRANGEBYSCORE', base .. set, '-inf', score, 'LIMIT', 0, 256)
    drop_many(base, set, prefix, due)
  until #due < 256
end
local function touch(base, suffixes)
  for _, suffix in ipairs(suffixes) do redis.call('PEXPIRE', base .. suffix, keep) end
end
";

/// Per account (`KEYS`): expired holds and reported entries past the lag leave; the
/// platform's figure (`ARGV[4 + 2i]`) grew since the highest seen: the growth is matched to
/// reported entries, oldest first. Answers `{held, extra...}`: the units to add to each figure.
/// With units to hold (`ARGV[3]`, and the hold's id `ARGV[4]`, its lifetime `ARGV[5]`), they
/// are held in every account when each one's extra is at most its limit (`ARGV[5 + 2i]`).
const DECIDE: &str = r"
local units = tonumber(ARGV[3])
local fits = units ~= nil
local extras = {}
for i, base in ipairs(KEYS) do
  expire(base, ':h', 'h', now)
  expire(base, ':r', 'e', now - lag)
  local figure = tonumber(ARGV[4 + 2 * i])
  local state = redis.call('HMGET', base, 'high', 'pending', 'high_at')
  local high, pending = tonumber(state[1]), tonumber(state[2] or '0')
  -- Lower than the floor for longer than the lag: the platform's own figure (a new period).
  if high and figure < high and now - tonumber(state[3] or '0') >= lag then
    high = figure
    redis.call('HSET', base, 'high', fmt(figure), 'high_at', fmt(now))
  end
  if high and figure > high then
    local grown = figure - high
    while grown > 0 do
      local oldest = redis.call('ZRANGE', base .. ':r', 0, 63)
      if #oldest == 0 then break end
      local fields = {}
      for j, key in ipairs(oldest) do fields[j] = 'e' .. key end
      local lefts = redis.call('HMGET', base .. ':u', unpack(fields))
      local counted = {}
      for j, key in ipairs(oldest) do
        if grown <= 0 then break end
        local left = tonumber(lefts[j]) or 0
        local part = math.min(grown, left)
        grown = grown - part
        if part >= left then
          counted[#counted + 1] = key
        else
          redis.call('HSET', base .. ':u', fields[j], fmt(left - part))
          add(base, -part)
        end
      end
      drop_many(base, ':r', 'e', counted)
    end
    pending = tonumber(redis.call('HGET', base, 'pending') or '0')
  end
  if (not high) or figure > high then
    high = figure
    redis.call('HSET', base, 'high', fmt(figure), 'high_at', fmt(now))
  end
  local extra = (high - figure) + pending
  extras[i] = fmt(extra)
  local limit = ARGV[5 + 2 * i]
  if limit ~= 'inf' and extra > tonumber(limit) then fits = false end
end
for _, base in ipairs(KEYS) do
  if fits then
    redis.call('ZADD', base .. ':h', now + tonumber(ARGV[5]), ARGV[4])
    redis.call('HSET', base .. ':u', 'h' .. ARGV[4], fmt(units))
    add(base, units)
    touch(base, {'', ':h', ':u'})
  else
    touch(base, {''})
  end
end
table.insert(extras, 1, fits and 1 or 0)
return extras
";

/// The hold `ARGV[3]` (if any) of account `KEYS[1]` becomes the reported event `ARGV[4]` of
/// `ARGV[5]` units, unless that event is pending already (the platform counts a key once). Its
/// metering lag starts now: with the tier up, the event is on the fleet's stream at once, as
/// good as accepted, which saves each event a round trip to say so.
const REPORT: &str = r"
local base, hold, key = KEYS[1], ARGV[3], ARGV[4]
if hold ~= '' then drop_hold(base, hold) end
if redis.call('HEXISTS', base .. ':u', 'e' .. key) == 0 then
  redis.call('ZADD', base .. ':r', now, key)
  redis.call('HSET', base .. ':u', 'e' .. key, ARGV[5])
  add(base, tonumber(ARGV[5]))
end
touch(base, {'', ':r', ':u'})
return 1
";

/// Releases the hold `ARGV[3]` in each account.
const RELEASE: &str = r"
for _, base in ipairs(KEYS) do drop_hold(base, ARGV[3]) end
return 1
";

/// The event `ARGV[2 + i]` of account `KEYS[i]` was refused, or could not be queued: it stops
/// counting.
const REFUSE: &str = r"
for i, base in ipairs(KEYS) do drop_reported(base, ARGV[2 + i]) end
return 1
";

fn script(body: &str) -> redis::Script {
    redis::Script::new(&format!("{PRELUDE}{body}"))
}

static DECIDE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| script(DECIDE));
static REPORT_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| script(REPORT));
static RELEASE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| script(RELEASE));
static REFUSE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| script(REFUSE));

/// The pending units the fleet's ledger answered, and whether it took the hold.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pending {
    pub(crate) held: bool,
    /// The units to add to each figure, in the order given.
    pub(crate) extra: Vec<f64>,
}

/// A hold to take: its id and units, and for each feature the most pending units that still
/// let it in.
#[derive(Debug)]
pub(crate) struct HoldRequest<'a> {
    pub(crate) id: &'a str,
    pub(crate) units: f64,
    pub(crate) limits: &'a [f64],
}

/// Lifetimes of the entries: what the in-process ledger is configured with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lifetimes {
    pub(crate) hold_ttl: Duration,
    pub(crate) metering_lag: Duration,
}

impl Lifetimes {
    /// How long an account nobody touches stays: past its last hold and its last lag.
    fn keep_ms(self) -> u64 {
        (self.hold_ttl.max(self.metering_lag) + self.metering_lag).as_millis() as u64
    }
}

fn number(value: f64) -> String {
    if value.is_finite() {
        format!("{value:?}")
    } else {
        "inf".to_owned()
    }
}

impl RedisTier {
    fn account(&self, customer: &str, feature: &str) -> String {
        format!(
            "{}:ledger:{}",
            self.namespace,
            keys::compose(&[customer, feature])
        )
    }

    fn invocation(
        &self,
        script: &'static redis::Script,
        lifetimes: Lifetimes,
    ) -> redis::ScriptInvocation<'static> {
        let mut invocation = script.prepare_invoke();
        invocation
            .arg(lifetimes.keep_ms())
            .arg(lifetimes.metering_lag.as_millis() as u64);
        invocation
    }

    /// The fleet's pending units of each feature, with their figures reconciled; with `hold`,
    /// the hold taken when every feature's pending units are within its limit. `None` when
    /// Redis is unavailable.
    pub(crate) async fn pending(
        &self,
        lifetimes: Lifetimes,
        customer: &str,
        figures: &[(&str, f64)],
        hold: Option<HoldRequest<'_>>,
    ) -> Option<Pending> {
        let mut invocation = self.invocation(&DECIDE_SCRIPT, lifetimes);
        match &hold {
            Some(hold) => invocation
                .arg(number(hold.units))
                .arg(hold.id)
                .arg(lifetimes.hold_ttl.as_millis() as u64),
            None => invocation.arg("").arg("").arg(0),
        };
        for (at, (feature, figure)) in figures.iter().enumerate() {
            invocation.key(self.account(customer, feature));
            let limit = hold.as_ref().map_or(f64::INFINITY, |hold| hold.limits[at]);
            invocation.arg(number(*figure)).arg(number(limit));
        }
        let answer: Vec<String> = self
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        let (held, extra) = answer.split_first()?;
        Some(Pending {
            held: held == "1",
            extra: extra
                .iter()
                .map(|units| units.parse().unwrap_or(0.0))
                .collect(),
        })
    }

    /// A hold (or no hold) of `feature` reported as the event `key` of `units`; `false` when
    /// Redis is unavailable.
    pub(crate) async fn report(
        &self,
        lifetimes: Lifetimes,
        customer: &str,
        feature: &str,
        hold: Option<&str>,
        key: &str,
        units: f64,
    ) -> bool {
        let mut invocation = self.invocation(&REPORT_SCRIPT, lifetimes);
        invocation
            .key(self.account(customer, feature))
            .arg(hold.unwrap_or(""))
            .arg(key)
            .arg(number(units));
        self.run(
            |mut connection| async move { invocation.invoke_async::<i64>(&mut connection).await },
        )
        .await
        .is_some()
    }

    /// Releases the hold `id` of each feature.
    pub(crate) async fn release(
        &self,
        lifetimes: Lifetimes,
        customer: &str,
        features: &[&str],
        id: &str,
    ) {
        let mut invocation = self.invocation(&RELEASE_SCRIPT, lifetimes);
        invocation.arg(id);
        for feature in features {
            invocation.key(self.account(customer, feature));
        }
        self.run(
            |mut connection| async move { invocation.invoke_async::<i64>(&mut connection).await },
        )
        .await;
    }

    /// Events refused, or that could not be queued (by customer, feature and idempotency
    /// key): they stop counting.
    pub(crate) async fn refuse(&self, lifetimes: Lifetimes, events: &[(&str, &str, &str)]) {
        let mut invocation = self.invocation(&REFUSE_SCRIPT, lifetimes);
        for (customer, feature, key) in events {
            invocation.key(self.account(customer, feature)).arg(*key);
        }
        self.run(
            |mut connection| async move { invocation.invoke_async::<i64>(&mut connection).await },
        )
        .await;
    }
}
