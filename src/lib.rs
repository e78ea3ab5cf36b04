//! carto_fdw: a PostgreSQL foreign-data wrapper for CARTO's SQL API.
//!
//! `fdw/` holds the wrapper (one module per concern, after postgres_fdw), `pg/` the small wrappers
//! over PostgreSQL that several modules share. Everything HTTP lives in the carto-client crate.

use pgrx::prelude::*;

pub mod build_id;
pub mod fdw;
pub mod functions;
pub mod pg;
pub mod sync;

::pgrx::pg_module_magic!();

/// Called when the library is loaded into a backend (or the postmaster, when preloaded): registers
/// the configuration parameters and nothing else (no threads, no runtime: see crate::pg::runtime).
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    fdw::settings::register();
}

extension_sql!(
    r#"
CREATE FOREIGN DATA WRAPPER carto_fdw
  HANDLER carto_fdw_handler
  VALIDATOR carto_fdw_validator;
COMMENT ON FOREIGN DATA WRAPPER carto_fdw IS 'CARTO tables through the CARTO SQL API';
"#,
    name = "create_fdw",
    requires = [fdw::carto_fdw_handler, fdw::options::carto_fdw_validator]
);

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn wrapper_exists_with_handler_and_validator() {
        let n = Spi::get_one::<i64>(
            "SELECT count(*) FROM pg_foreign_data_wrapper WHERE fdwname = 'carto_fdw' AND fdwhandler <> 0 AND fdwvalidator <> 0",
        );
        assert_eq!(n, Ok(Some(1)));
    }

    #[pg_test(error = "invalid option \"usernme\" for a server")]
    fn validator_rejects_unknown_option() {
        Spi::run("CREATE SERVER s1 FOREIGN DATA WRAPPER carto_fdw OPTIONS (usernme 'x')").unwrap();
    }

    #[pg_test(error = "options \"username\" and \"base_url\" cannot both be set")]
    fn validator_username_xor_base_url() {
        Spi::run("CREATE SERVER s2 FOREIGN DATA WRAPPER carto_fdw OPTIONS (username 'a', base_url 'http://127.0.0.1:1/user/a')").unwrap();
    }

    #[pg_test]
    fn validator_accepts_valid_options() {
        Spi::run("CREATE SERVER s3 FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url 'http://127.0.0.1:1/user/demo', scan_method 'copy', compression_level '9')").unwrap();
        Spi::run("CREATE USER MAPPING FOR CURRENT_USER SERVER s3 OPTIONS (api_key 'k')").unwrap();
        Spi::run("CREATE FOREIGN TABLE ft (cartodb_id int, name text OPTIONS (column_name 'n')) SERVER s3 OPTIONS (table_name 'cities', rowid_column 'cartodb_id')").unwrap();
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
