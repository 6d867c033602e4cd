//! The engine's access to the code host, through faseng's GitHub client:
//! clone credentials per repository (a token, or the App installation's) and
//! the short-lived tarball link Heroku downloads.

use chima_engine::SourceAccess;
use chima_github::GitHub;

#[derive(Debug)]
pub struct GitHubAccess {
    pub gh: GitHub,
}

#[async_trait::async_trait]
impl SourceAccess for GitHubAccess {
    async fn clone_auth(&self, repository: &str) -> Result<Option<String>, String> {
        self.gh
            .git_auth_header(repository)
            .await
            .map(|s| Some(s.expose().to_string()))
            .map_err(|e| e.to_string())
    }

    async fn tarball_url(&self, repository: &str, sha: &str) -> Result<String, String> {
        self.gh
            .tarball_url(repository, sha)
            .await
            .map_err(|e| e.to_string())
    }
}
