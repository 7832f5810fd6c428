-- Status changes and evidence links are records, not working state: like the audit log
-- they are never updated or deleted, and a case, once opened, is never deleted (it is
-- dismissed or closed). The triggers refuse it; `citywatch cases verify` still detects
-- a change made by someone who disabled them (each row is covered by the audit chain,
-- whose head is anchored outside the database).

CREATE FUNCTION case_record_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END $$;

CREATE TRIGGER case_transitions_append_only BEFORE UPDATE OR DELETE ON case_transitions
    FOR EACH ROW EXECUTE FUNCTION case_record_refuse_change();
CREATE TRIGGER case_transitions_no_truncate BEFORE TRUNCATE ON case_transitions
    FOR EACH STATEMENT EXECUTE FUNCTION case_record_refuse_change();
CREATE TRIGGER case_evidence_append_only BEFORE UPDATE OR DELETE ON case_evidence
    FOR EACH ROW EXECUTE FUNCTION case_record_refuse_change();
CREATE TRIGGER case_evidence_no_truncate BEFORE TRUNCATE ON case_evidence
    FOR EACH STATEMENT EXECUTE FUNCTION case_record_refuse_change();
CREATE TRIGGER cases_no_delete BEFORE DELETE ON cases
    FOR EACH ROW EXECUTE FUNCTION case_record_refuse_change();
CREATE TRIGGER cases_no_truncate BEFORE TRUNCATE ON cases
    FOR EACH STATEMENT EXECUTE FUNCTION case_record_refuse_change();
