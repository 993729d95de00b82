//! Integration tests of grodt-analytics, one binary: golden references on
//! real data, properties, and the HTML report.

mod golden;
mod helpers;
mod props;
mod report;
