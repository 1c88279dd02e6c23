//! The principal resolver's loop: every pass resolves the permission sets of the mappings that
//! name one (one ListRoles of the SSO path for all of them) and, with `--verify-principals`,
//! checks every role and user ARN (GetRole/GetUser, answers cached for a TTL, a bounded number
//! in flight). It decides nothing itself: [`super::sso::resolve`] and [`super::verify::verdict`]
//! do; it publishes the reports into a [`PrincipalBoard`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::MappingCache;
use futures::{StreamExt, stream};
use kube::ResourceExt;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::iam::{IamApi, IamError};
use super::sso::{self, IamPrincipal, SSO_ROLE_PATH_PREFIX};
use super::verify::{self, PrincipalCheck, Question, Verdict};
use super::{PrincipalBoard, PrincipalReport, PrincipalsConfig, closest_names, resolved_arn};
use crate::api::IamIdentityMapping;
use crate::arn::PrincipalKind;
use crate::loops::{PassSchedule, wait_until_synced};

/// A permission set missing from the last listing is looked up again no sooner than this (a
/// mapping applied right after its permission set was provisioned resolves within seconds,
/// and a misspelt one does not list the roles on every mapping event).
const RELIST_MISSING_AFTER: Duration = Duration::from_secs(15);

/// One listing from IAM, and when it was made.
struct Listing {
    at: Instant,
    result: Result<Vec<IamPrincipal>, String>,
}

impl Listing {
    fn fresh(&self, ttl: Duration) -> bool {
        self.at.elapsed() < ttl
    }
}

/// What the resolver remembers of IAM's answers about principals between passes.
#[derive(Default)]
struct Memory {
    /// GetRole/GetUser answers (cached for the TTL; failures are not cached).
    answers: HashMap<Question, (Instant, Option<IamPrincipal>)>,
    /// Every role or user name of the account, for hints about a missing one.
    names: HashMap<PrincipalKind, Listing>,
    /// The look-alike names of each missing principal, until its kind is listed again.
    hints: HashMap<Question, Vec<String>>,
}

impl Memory {
    /// Forgets the answers older than `ttl`, and the hints about them.
    fn forget(&mut self, ttl: Duration) {
        self.answers.retain(|_, (at, _)| at.elapsed() < ttl);
        self.hints.retain(|q, _| self.answers.contains_key(q));
    }

    fn knows(&self, question: &Question) -> bool {
        self.answers.contains_key(question)
    }

    fn remember(&mut self, question: Question, at: Instant, found: Option<IamPrincipal>) {
        self.answers.insert(question, (at, found));
    }

    /// The kinds of principal IAM said are missing whose names are not listed within `ttl`
    /// (a listing that failed is tried again at the next pass).
    fn kinds_to_list<'a>(
        &self,
        questions: impl Iterator<Item = &'a Question>,
        ttl: Duration,
    ) -> BTreeSet<PrincipalKind> {
        questions
            .filter(|q| matches!(self.answers.get(*q), Some((_, None))))
            .map(|q| q.kind)
            .filter(|kind| {
                !self
                    .names
                    .get(kind)
                    .is_some_and(|l| l.result.is_ok() && l.fresh(ttl))
            })
            .collect()
    }

    /// A new listing of every name of `kind`: the hints from the last one go.
    fn listed(&mut self, kind: PrincipalKind, result: Result<Vec<IamPrincipal>, String>) {
        self.hints.retain(|q, _| q.kind != kind);
        let at = Instant::now();
        self.names.insert(kind, Listing { at, result });
    }

    /// The verdict about `arn` from IAM's remembered answer to `question`; `None` without one.
    fn verdict(&mut self, arn: &str, question: &Question) -> Option<Verdict> {
        let (_, found) = self.answers.get(question)?;
        let (names, hints) = (&self.names, &mut self.hints);
        Some(verify::verdict(arn, found.as_ref(), || {
            // Computed once per listing: an edit distance to every name.
            hints
                .entry(question.clone())
                .or_insert_with(|| {
                    let all = match names.get(&question.kind).map(|l| &l.result) {
                        Some(Ok(all)) => all.as_slice(),
                        _ => &[],
                    };
                    closest_names(&question.name, all.iter().map(|p| p.name.as_str()))
                })
                .clone()
        }))
    }
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassSummary {
    pub permission_sets: usize,
    pub checked: usize,
    pub iam_calls: u64,
    /// Whether a report changed.
    pub changed: bool,
}

/// The resolver's memory between passes: IAM's listings and answers.
pub struct Resolver {
    config: PrincipalsConfig,
    board: PrincipalBoard,
    /// The IAM Identity Center roles, as last listed.
    sso_roles: Option<Listing>,
    memory: Memory,
    own_account: Option<String>,
}

impl Resolver {
    pub fn new(config: PrincipalsConfig, board: PrincipalBoard) -> Resolver {
        Resolver {
            config,
            board,
            sso_roles: None,
            memory: Memory::default(),
            own_account: None,
        }
    }

    pub fn board(&self) -> &PrincipalBoard {
        &self.board
    }

    /// One pass over `mappings`. `iam` is the client, or why there is none; `resync` lists the
    /// SSO roles again even if nothing changed.
    pub async fn pass<I: IamApi>(
        &mut self,
        iam: Result<&I, &IamError>,
        mappings: &[Arc<IamIdentityMapping>],
        resync: bool,
    ) -> PassSummary {
        let calls = || iam.ok().map(|i| i.calls().total()).unwrap_or_default();
        let calls_before = calls();
        let mut reports: BTreeMap<String, PrincipalReport> = BTreeMap::new();
        let permission_sets = self
            .resolve_permission_sets(iam, mappings, resync, &mut reports)
            .await;
        let checked = if self.config.verify {
            self.verify_arns(iam, mappings, &mut reports).await
        } else {
            0
        };
        let changed = self.board.publish(reports);
        let summary = PassSummary {
            permission_sets,
            checked,
            iam_calls: calls() - calls_before,
            changed,
        };
        debug!(?summary, "principal pass done");
        summary
    }

    /// Resolves the permission sets of the mappings that name one, with one listing for all of
    /// them, into `reports`. Returns how many mappings name one.
    async fn resolve_permission_sets<I: IamApi>(
        &mut self,
        iam: Result<&I, &IamError>,
        mappings: &[Arc<IamIdentityMapping>],
        resync: bool,
        reports: &mut BTreeMap<String, PrincipalReport>,
    ) -> usize {
        let wanted: Vec<(&IamIdentityMapping, &str)> = mappings
            .iter()
            .filter_map(|m| {
                let set = m.spec.sso_permission_set.as_ref()?;
                Some((m.as_ref(), set.name.as_str()))
            })
            .collect();
        if wanted.is_empty() {
            return 0;
        }
        if self.must_list_sso_roles(wanted.iter().map(|(_, name)| *name), resync) {
            self.list_sso_roles(iam).await;
        }
        let previous = self.board.snapshot();
        let listing = self.sso_roles.as_ref().map(|l| &l.result);
        let roles = match listing {
            Some(Ok(roles)) => Ok(roles.as_slice()),
            Some(Err(error)) => Err(error.as_str()),
            None => Err("not listed yet"),
        };
        for (mapping, set) in &wanted {
            let name = mapping.name_any();
            let before = resolved_arn(&mapping.spec, mapping.status.as_ref(), previous.get(&name));
            let resolution = sso::resolve(set, roles, before.as_deref());
            if let sso::SsoState::Replaced { previous } = &resolution.state {
                info!(mapping = %name, permission_set = %set, previous = %previous, role = ?resolution.arn, "permission set re-provisioned: following its new role");
            }
            reports.entry(name).or_default().sso = Some(resolution);
        }
        wanted.len()
    }

    /// Lists the IAM Identity Center roles.
    async fn list_sso_roles<I: IamApi>(&mut self, iam: Result<&I, &IamError>) {
        let result = match iam {
            Ok(iam) => iam
                .list_roles(SSO_ROLE_PATH_PREFIX)
                .await
                .map_err(|e| e.to_string()),
            Err(err) => Err(err.to_string()),
        };
        if let Err(error) = &result {
            warn!(%error, "cannot list the IAM Identity Center roles; permission sets keep the role they resolved to");
        }
        let at = Instant::now();
        self.sso_roles = Some(Listing { at, result });
    }

    /// `--verify-principals`: checks each distinct `spec.arn` once, into `reports` (a permission
    /// set's role is checked by its resolution already). Returns how many ARNs were checked.
    async fn verify_arns<I: IamApi>(
        &mut self,
        iam: Result<&I, &IamError>,
        mappings: &[Arc<IamIdentityMapping>],
        reports: &mut BTreeMap<String, PrincipalReport>,
    ) -> usize {
        let arns: Vec<(String, String)> = mappings
            .iter()
            .filter_map(|m| m.spec.arn.clone().map(|arn| (m.name_any(), arn)))
            .collect();
        let checks = self
            .check(iam, arns.iter().map(|(_, arn)| arn.as_str()))
            .await;
        for (name, arn) in arns {
            if let Some(check) = checks.get(&arn) {
                reports.entry(name).or_default().check = Some(check.clone());
            }
        }
        checks.len()
    }

    /// Whether the SSO roles must be listed again: on resync, when never listed (or the last
    /// listing failed), or when a permission set does not resolve in the last listing and that
    /// listing is a little old (a permission set provisioned a moment ago).
    fn must_list_sso_roles<'a>(
        &self,
        mut names: impl Iterator<Item = &'a str>,
        resync: bool,
    ) -> bool {
        let Some(Listing {
            result: Ok(roles), ..
        }) = &self.sso_roles
        else {
            return true;
        };
        let stale = self
            .sso_roles
            .as_ref()
            .is_some_and(|l| !l.fresh(RELIST_MISSING_AFTER));
        resync || (stale && names.any(|n| !matches!(sso::lookup(n, roles), sso::Lookup::One(_))))
    }

    /// Verdicts about `arns` (distinct), asking IAM only what it has not answered within the TTL.
    async fn check<'a, I: IamApi>(
        &mut self,
        iam: Result<&I, &IamError>,
        arns: impl Iterator<Item = &'a str>,
    ) -> HashMap<String, PrincipalCheck> {
        let arns: BTreeSet<&str> = arns.collect();
        let questions: BTreeMap<&str, Question> = arns
            .iter()
            .filter_map(|arn| verify::question(arn).map(|q| (*arn, q)))
            .collect();
        let own = self.own_account(iam).await;
        self.memory.forget(self.config.cache_ttl);
        let mut failures = HashMap::new();
        if let Ok(iam) = iam {
            if let Ok(own) = &own {
                failures = self.ask_unanswered(iam, questions.values(), own).await;
            }
            self.list_names_of_missing(iam, questions.values()).await;
        }
        let mut checks = HashMap::new();
        for (arn, question) in &questions {
            let verdict = self.verdict(arn, question, &own, failures.get(question), iam.err());
            let arn = arn.to_string();
            checks.insert(arn.clone(), PrincipalCheck { arn, verdict });
        }
        checks
    }

    /// The operator's own account: asked once, then remembered.
    async fn own_account<I: IamApi>(
        &mut self,
        iam: Result<&I, &IamError>,
    ) -> Result<String, String> {
        let own = match (iam, &self.own_account) {
            (_, Some(own)) => Ok(own.clone()),
            (Ok(iam), None) => iam.own_account().await.map_err(|e| e.to_string()),
            (Err(err), None) => Err(err.to_string()),
        };
        if let Ok(own) = &own {
            self.own_account = Some(own.clone());
        }
        own
    }

    /// Asks IAM the questions about the `own` account it has not answered within the TTL.
    /// Returns why each question that failed did.
    async fn ask_unanswered<'a, I: IamApi>(
        &mut self,
        iam: &I,
        questions: impl Iterator<Item = &'a Question>,
        own: &str,
    ) -> HashMap<Question, String> {
        let to_ask: BTreeSet<Question> = questions
            .filter(|q| q.account == own && !self.memory.knows(q))
            .cloned()
            .collect();
        let answers = ask(iam, to_ask.into_iter().collect(), self.config.concurrency).await;
        let now = Instant::now();
        let mut failures = HashMap::new();
        for (question, answer) in answers {
            match answer {
                Ok(found) => self.memory.remember(question, now, found),
                Err(err) => {
                    failures.insert(question, err.to_string());
                }
            }
        }
        failures
    }

    /// Hints only for what is missing, from one listing per kind (cached for the TTL).
    async fn list_names_of_missing<'a, I: IamApi>(
        &mut self,
        iam: &I,
        questions: impl Iterator<Item = &'a Question>,
    ) {
        for kind in self.memory.kinds_to_list(questions, self.config.cache_ttl) {
            let result = match kind {
                PrincipalKind::Role => iam.list_roles("/").await,
                PrincipalKind::User => iam.list_users().await,
            };
            self.memory.listed(kind, result.map_err(|e| e.to_string()));
        }
    }

    /// The verdict about `arn`: from the operator's account, IAM's answer, or why there is none.
    fn verdict(
        &mut self,
        arn: &str,
        question: &Question,
        own: &Result<String, String>,
        failure: Option<&String>,
        no_client: Option<&IamError>,
    ) -> Verdict {
        let unchecked = |error: String| Verdict::Unchecked { error };
        match own {
            Err(error) => unchecked(format!("cannot tell the operator's account: {error}")),
            Ok(own) if question.account != *own => Verdict::OtherAccount {
                account: question.account.clone(),
                own: own.clone(),
            },
            Ok(_) => self.memory.verdict(arn, question).unwrap_or_else(|| {
                unchecked(match (failure, no_client) {
                    (Some(error), _) => error.clone(),
                    (None, Some(error)) => error.to_string(),
                    (None, None) => "not asked".to_string(),
                })
            }),
        }
    }
}

/// GetRole/GetUser for each question, `concurrency` in flight at once.
async fn ask<I: IamApi>(
    iam: &I,
    questions: Vec<Question>,
    concurrency: usize,
) -> Vec<(Question, Result<Option<IamPrincipal>, IamError>)> {
    stream::iter(questions)
        .map(|question| get(iam, question))
        .buffer_unordered(concurrency)
        .collect()
        .await
}

async fn get<I: IamApi>(
    iam: &I,
    question: Question,
) -> (Question, Result<Option<IamPrincipal>, IamError>) {
    let answer = match question.kind {
        PrincipalKind::Role => iam.get_role(&question.name).await,
        PrincipalKind::User => iam.get_user(&question.name).await,
    };
    (question, answer)
}

/// Whether any mapping needs IAM (so that the client is built only then).
pub fn needs_iam(mappings: &[Arc<IamIdentityMapping>], verify: bool) -> bool {
    verify || mappings.iter().any(|m| m.spec.sso_permission_set.is_some())
}

/// The loop: waits for the mapping store, then runs a pass on every wake (after a short
/// debounce) and at every resync, until `shutdown` completes. The IAM client is made (by
/// `make_iam`) the first time a mapping needs it. With leader election, only the leader asks
/// IAM (`leading`).
pub async fn run_loop<I, F, Fut>(
    make_iam: F,
    config: PrincipalsConfig,
    mappings: MappingCache,
    wake: Arc<Notify>,
    board: PrincipalBoard,
    leading: Option<tokio::sync::watch::Receiver<bool>>,
    shutdown: impl Future<Output = ()>,
) where
    I: IamApi,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<I, IamError>>,
{
    tokio::pin!(shutdown);
    if !wait_until_synced(&mappings.watch, shutdown.as_mut(), "principal resolver").await {
        return;
    }
    let mut schedule = PassSchedule::new(config.resync, leading);
    let verify = config.verify;
    let mut resolver = Resolver::new(config, board);
    let mut iam: Option<Result<I, IamError>> = None;
    while let Some(resync) = schedule.next(&wake, shutdown.as_mut()).await {
        let listed = mappings.store.state();
        if !needs_iam(&listed, verify) {
            // Nothing to resolve: no IAM call, and stale reports go.
            resolver.board.publish(BTreeMap::new());
            continue;
        }
        // A client that could not be made (no region) is tried again on resync.
        if iam.is_none() || (resync && iam.as_ref().is_some_and(Result::is_err)) {
            let made = make_iam().await;
            match &made {
                Ok(_) => info!(verify_principals = verify, "IAM client ready"),
                Err(error) => warn!(%error, "no IAM client"),
            }
            iam = Some(made);
        }
        if let Some(iam) = &iam {
            resolver.pass(iam.as_ref(), &listed, resync).await;
        }
    }
    info!("principal resolver stopped");
}

#[cfg(test)]
mod tests {
    //! Passes against an in-memory IAM that counts its calls and can be made to fail.

    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::accessentries::client::CallCounts;
    use crate::api::{IamIdentityMappingSpec, SsoPermissionSetRef};

    const ACCOUNT: &str = "111122223333";
    const SSO_PATH: &str = "/aws-reserved/sso.amazonaws.com/eu-west-1/";
    const ADMIN_V1: &str = "AWSReservedSSO_Admin_0123456789abcdef";
    const ADMIN_V2: &str = "AWSReservedSSO_Admin_fedcba9876543210";

    #[derive(Default)]
    struct State {
        roles: Vec<IamPrincipal>,
        users: Vec<IamPrincipal>,
        down: bool,
        calls: CallCounts,
    }

    #[derive(Default)]
    struct FakeIam {
        state: Mutex<State>,
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
    }

    fn principal(kind: &str, path: &str, name: &str) -> IamPrincipal {
        IamPrincipal {
            name: name.to_string(),
            path: path.to_string(),
            arn: format!("arn:aws:iam::{ACCOUNT}:{kind}{path}{name}"),
        }
    }

    impl FakeIam {
        fn with_roles(roles: &[(&str, &str)]) -> FakeIam {
            let iam = FakeIam::default();
            for (path, name) in roles {
                iam.add_role(path, name);
            }
            iam
        }

        fn add_role(&self, path: &str, name: &str) {
            let mut state = self.state.lock().unwrap();
            state.roles.push(principal("role", path, name));
        }

        fn delete_role(&self, name: &str) {
            self.state.lock().unwrap().roles.retain(|r| r.name != name);
        }

        fn set_down(&self, down: bool) {
            self.state.lock().unwrap().down = down;
        }

        fn calls(&self) -> CallCounts {
            self.state.lock().unwrap().calls.clone()
        }

        async fn call<T>(
            &self,
            operation: &'static str,
            f: impl FnOnce(&State) -> T,
        ) -> Result<T, IamError> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            // Let other calls start, so that the bound on calls in flight is observable.
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            let mut state = self.state.lock().unwrap();
            *state.calls.0.entry(operation).or_default() += 1;
            if state.down {
                return Err(IamError::new(
                    operation,
                    "cannot reach IAM: connection refused",
                ));
            }
            Ok(f(&state))
        }
    }

    impl IamApi for FakeIam {
        async fn list_roles(&self, prefix: &str) -> Result<Vec<IamPrincipal>, IamError> {
            let prefix = prefix.to_string();
            self.call("ListRoles", move |s| {
                s.roles
                    .iter()
                    .filter(|r| r.path.starts_with(&prefix))
                    .cloned()
                    .collect()
            })
            .await
        }
        async fn list_users(&self) -> Result<Vec<IamPrincipal>, IamError> {
            self.call("ListUsers", |s| s.users.clone()).await
        }
        async fn get_role(&self, name: &str) -> Result<Option<IamPrincipal>, IamError> {
            let name = name.to_lowercase();
            self.call("GetRole", move |s| {
                s.roles
                    .iter()
                    .find(|r| r.name.to_lowercase() == name)
                    .cloned()
            })
            .await
        }
        async fn get_user(&self, name: &str) -> Result<Option<IamPrincipal>, IamError> {
            let name = name.to_lowercase();
            self.call("GetUser", move |s| {
                s.users
                    .iter()
                    .find(|u| u.name.to_lowercase() == name)
                    .cloned()
            })
            .await
        }
        async fn own_account(&self) -> Result<String, IamError> {
            self.call("GetCallerIdentity", |_| ACCOUNT.to_string())
                .await
        }
        fn calls(&self) -> CallCounts {
            FakeIam::calls(self)
        }
    }

    fn config(verify: bool) -> PrincipalsConfig {
        PrincipalsConfig {
            verify,
            cache_ttl: Duration::from_secs(600),
            concurrency: 4,
            resync: Duration::from_secs(300),
            region: Some("eu-west-1".into()),
            iam_endpoint: None,
        }
    }

    fn sso_mapping(name: &str, set: &str) -> Arc<IamIdentityMapping> {
        Arc::new(IamIdentityMapping::new(
            name,
            IamIdentityMappingSpec {
                sso_permission_set: Some(SsoPermissionSetRef { name: set.into() }),
                username: Some("sso:{{SessionName}}".into()),
                ..Default::default()
            },
        ))
    }

    fn arn_mapping(name: &str, arn: &str) -> Arc<IamIdentityMapping> {
        Arc::new(IamIdentityMapping::new(
            name,
            IamIdentityMappingSpec {
                arn: Some(arn.into()),
                username: Some("u".into()),
                ..Default::default()
            },
        ))
    }

    fn sso_of(resolver: &Resolver, name: &str) -> sso::SsoResolution {
        resolver.board().get(name).unwrap().sso.unwrap()
    }

    fn verdict_of(resolver: &Resolver, name: &str) -> Verdict {
        resolver.board().get(name).unwrap().check.unwrap().verdict
    }

    fn sso_arn(name: &str) -> String {
        format!("arn:aws:iam::{ACCOUNT}:role{SSO_PATH}{name}")
    }

    #[tokio::test]
    async fn permission_sets_resolve_with_one_listing_for_all_of_them() {
        let iam = FakeIam::with_roles(&[
            (SSO_PATH, ADMIN_V1),
            (SSO_PATH, "AWSReservedSSO_ReadOnly_1111111111111111"),
            ("/", "unrelated"),
        ]);
        let mut resolver = Resolver::new(config(false), PrincipalBoard::new());
        let mappings = vec![
            sso_mapping("admins", "Admin"),
            sso_mapping("viewers", "ReadOnly"),
            sso_mapping("typo", "ReadOnlly"),
        ];
        let summary = resolver.pass(Ok(&iam), &mappings, true).await;
        assert!(summary.changed);
        assert_eq!(iam.calls().0.get("ListRoles"), Some(&1));
        assert_eq!(sso_of(&resolver, "admins").arn, Some(sso_arn(ADMIN_V1)));
        let typo = sso_of(&resolver, "typo");
        assert_eq!(typo.arn, None);
        assert_eq!(
            typo.state,
            sso::SsoState::NotFound {
                similar: vec!["ReadOnly".into()]
            }
        );
        // Nothing changed: no new listing until the resync (the miss is retried only after a while).
        let summary = resolver.pass(Ok(&iam), &mappings, false).await;
        assert!(!summary.changed);
        assert_eq!(summary.iam_calls, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permission_set_missing_from_the_listing_is_looked_up_again_after_a_while() {
        let iam = FakeIam::default();
        let mut resolver = Resolver::new(config(false), PrincipalBoard::new());
        let mappings = vec![sso_mapping("admins", "Admin")];
        resolver.pass(Ok(&iam), &mappings, true).await;
        // Provisioned a moment later; mapping events within 15 s reuse the listing.
        iam.add_role(SSO_PATH, ADMIN_V1);
        resolver.pass(Ok(&iam), &mappings, false).await;
        assert_eq!(iam.calls().0.get("ListRoles"), Some(&1));
        assert_eq!(sso_of(&resolver, "admins").arn, None);
        tokio::time::advance(RELIST_MISSING_AFTER).await;
        resolver.pass(Ok(&iam), &mappings, false).await;
        assert_eq!(iam.calls().0.get("ListRoles"), Some(&2));
        assert_eq!(sso_of(&resolver, "admins").arn, Some(sso_arn(ADMIN_V1)));
        // Resolved: later mapping events list nothing, however old the listing.
        tokio::time::advance(RELIST_MISSING_AFTER * 4).await;
        resolver.pass(Ok(&iam), &mappings, false).await;
        assert_eq!(iam.calls().0.get("ListRoles"), Some(&2));
    }

    #[tokio::test]
    async fn a_reprovisioned_permission_set_is_followed_at_the_next_resync() {
        let iam = FakeIam::with_roles(&[(SSO_PATH, ADMIN_V1)]);
        let mut resolver = Resolver::new(config(false), PrincipalBoard::new());
        let mappings = vec![sso_mapping("admins", "Admin")];
        resolver.pass(Ok(&iam), &mappings, true).await;
        iam.delete_role(ADMIN_V1);
        iam.add_role(SSO_PATH, ADMIN_V2);
        resolver.pass(Ok(&iam), &mappings, true).await;
        let resolution = sso_of(&resolver, "admins");
        assert_eq!(resolution.arn, Some(sso_arn(ADMIN_V2)));
        assert_eq!(
            resolution.state,
            sso::SsoState::Replaced {
                previous: sso_arn(ADMIN_V1)
            }
        );
    }

    #[tokio::test]
    async fn iam_down_keeps_every_resolved_role() {
        let iam = FakeIam::with_roles(&[(SSO_PATH, ADMIN_V1)]);
        let mut resolver = Resolver::new(config(true), PrincipalBoard::new());
        let mappings = vec![
            sso_mapping("admins", "Admin"),
            arn_mapping("ops", &format!("arn:aws:iam::{ACCOUNT}:role/ops")),
        ];
        resolver.pass(Ok(&iam), &mappings, true).await;
        iam.set_down(true);
        resolver.pass(Ok(&iam), &mappings, true).await;
        let admins = sso_of(&resolver, "admins");
        assert_eq!(admins.arn, Some(sso_arn(ADMIN_V1)));
        assert!(matches!(admins.state, sso::SsoState::Unavailable { .. }));
        // IAM's earlier answer about ops is still within its TTL: no call, same verdict.
        assert!(matches!(
            verdict_of(&resolver, "ops"),
            Verdict::Missing { .. }
        ));
    }

    #[tokio::test]
    async fn no_client_reports_why_and_keeps_the_status_role() {
        let mut status_mapping =
            IamIdentityMapping::new("admins", sso_mapping("admins", "Admin").spec.clone());
        status_mapping.status = Some(crate::api::IamIdentityMappingStatus {
            resolved_arn: Some(sso_arn(ADMIN_V1)),
            ..Default::default()
        });
        let mut resolver = Resolver::new(config(false), PrincipalBoard::new());
        let error = IamError::new("configure", "no AWS region: set --region");
        resolver
            .pass::<FakeIam>(Err(&error), &[Arc::new(status_mapping)], true)
            .await;
        let admins = sso_of(&resolver, "admins");
        assert_eq!(admins.arn, Some(sso_arn(ADMIN_V1)));
        assert!(admins.to_string().contains("no AWS region"), "{admins}");
    }

    #[tokio::test]
    async fn verification_finds_misses_hints_other_accounts_and_path_differences() {
        let iam = FakeIam::with_roles(&[("/team/", "platform-admin"), ("/", "viewer")]);
        iam.state
            .lock()
            .unwrap()
            .users
            .push(principal("user", "/people/", "alice"));
        let mut resolver = Resolver::new(config(true), PrincipalBoard::new());
        let mappings = vec![
            arn_mapping(
                "ok",
                &format!("arn:aws:iam::{ACCOUNT}:role/team/platform-admin"),
            ),
            arn_mapping(
                "typo",
                &format!("arn:aws:iam::{ACCOUNT}:role/team/platform-admn"),
            ),
            arn_mapping(
                "path",
                &format!("arn:aws:iam::{ACCOUNT}:role/platform-admin"),
            ),
            arn_mapping("user", &format!("arn:aws:iam::{ACCOUNT}:user/people/alice")),
            arn_mapping("other", "arn:aws:iam::444455556666:role/admin"),
        ];
        resolver.pass(Ok(&iam), &mappings, true).await;
        assert_eq!(verdict_of(&resolver, "ok"), Verdict::Found);
        assert_eq!(verdict_of(&resolver, "user"), Verdict::Found);
        assert_eq!(
            verdict_of(&resolver, "typo"),
            Verdict::Missing {
                similar: vec!["platform-admin".into()]
            }
        );
        assert_eq!(
            verdict_of(&resolver, "path"),
            Verdict::Differs {
                actual: format!("arn:aws:iam::{ACCOUNT}:role/team/platform-admin")
            }
        );
        assert!(matches!(
            verdict_of(&resolver, "other"),
            Verdict::OtherAccount { .. }
        ));
        let calls = iam.calls();
        // One GetRole per distinct name of this account (platform-admin serves two ARNs), none
        // for the other account; one listing of roles for the hint; no users listed.
        assert_eq!(calls.0.get("GetRole"), Some(&2));
        assert_eq!(calls.0.get("GetUser"), Some(&1));
        assert_eq!(calls.0.get("ListRoles"), Some(&1));
        assert_eq!(calls.0.get("ListUsers"), None);
        assert_eq!(calls.0.get("GetCallerIdentity"), Some(&1));
    }

    #[tokio::test]
    async fn thousands_of_principals_are_asked_once_per_ttl_with_bounded_concurrency() {
        let iam = FakeIam::default();
        let mappings: Vec<_> = (0..2000)
            .map(|i| {
                iam.add_role("/", &format!("role-{i}"));
                arn_mapping(
                    &format!("m{i}"),
                    &format!("arn:aws:iam::{ACCOUNT}:role/role-{i}"),
                )
            })
            .collect();
        let mut resolver = Resolver::new(config(true), PrincipalBoard::new());
        let first = resolver.pass(Ok(&iam), &mappings, true).await;
        assert_eq!(
            first.iam_calls, 2001,
            "one GetRole each and GetCallerIdentity once"
        );
        assert!(iam.most_in_flight.load(Ordering::SeqCst) <= 4);
        let again = resolver.pass(Ok(&iam), &mappings, true).await;
        assert_eq!(again.iam_calls, 0, "answers are cached for the TTL");
        assert!(!again.changed);
    }

    #[tokio::test]
    async fn an_expired_answer_is_asked_again() {
        let iam = FakeIam::default();
        let mappings = vec![arn_mapping(
            "ops",
            &format!("arn:aws:iam::{ACCOUNT}:role/ops"),
        )];
        let mut short = config(true);
        short.cache_ttl = Duration::from_millis(1);
        let mut resolver = Resolver::new(short, PrincipalBoard::new());
        resolver.pass(Ok(&iam), &mappings, false).await;
        assert!(matches!(
            verdict_of(&resolver, "ops"),
            Verdict::Missing { .. }
        ));
        // Terraform creates the role later.
        iam.add_role("/", "ops");
        tokio::time::sleep(Duration::from_millis(5)).await;
        resolver.pass(Ok(&iam), &mappings, false).await;
        assert_eq!(verdict_of(&resolver, "ops"), Verdict::Found);
    }

    #[tokio::test]
    async fn mappings_that_need_nothing_get_no_report() {
        let iam = FakeIam::default();
        let mut resolver = Resolver::new(config(false), PrincipalBoard::new());
        let mappings = vec![arn_mapping(
            "ops",
            &format!("arn:aws:iam::{ACCOUNT}:role/ops"),
        )];
        let summary = resolver.pass(Ok(&iam), &mappings, true).await;
        assert_eq!(summary.iam_calls, 0);
        assert!(resolver.board().snapshot().is_empty());
        assert!(!needs_iam(&mappings, false));
        assert!(needs_iam(&mappings, true));
        assert!(needs_iam(&[sso_mapping("a", "Admin")], false));
    }
}
